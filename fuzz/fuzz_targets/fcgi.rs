//! The FastCGI decoding a front server's bytes go through: records parsed one after the
//! other from arbitrary input (as the listener does with what it has read), each
//! BEGIN_REQUEST body, the PARAMS stream their contents make, and an HTTP answer head
//! rewritten for CGI. Never a panic; a record that parses spans bytes within the input, and
//! records written back parse to the same content.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner_protocol::fcgi;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let mut params = Vec::new();
    while let Ok(Some((record, used))) = fcgi::parse_record(rest) {
        assert!(used >= fcgi::HEADER_BYTES && used <= rest.len());
        if record.kind == fcgi::BEGIN_REQUEST {
            let _ = fcgi::parse_begin_request(record.content);
        }
        if record.kind == fcgi::PARAMS {
            params.extend_from_slice(record.content);
        }
        let mut again = Vec::new();
        fcgi::write_records(&mut again, record.kind, record.request_id, record.content);
        let (round_trip, _) = fcgi::parse_record(&again)
            .expect("written records parse")
            .expect("a whole record");
        assert_eq!(round_trip.content, record.content);
        rest = &rest[used..];
    }
    let _ = fcgi::parse_params(&params);
    let _ = fcgi::parse_params(data);
    let _ = fcgi::cgi_head(data);
});
