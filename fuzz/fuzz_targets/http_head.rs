//! The HTTP head parser, framing rules, chunked decoder and request helpers on arbitrary
//! bytes: never a panic, ranges always inside the buffer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner::plugins::http::head::{ChunkedDecoder, Head};
use ringrunner::plugins::http::request;

fuzz_target!(|data: &[u8]| {
    let mut head = Head::default();
    if let Ok(Some(())) = Head::parse(data, &mut head) {
        assert!(head.len <= data.len());
        let _ = head.body_kind(data);
        let _ = head.keep_alive(data);
        let _ = head.validate(data);
        let _ = head.has_length_and_coding(data);
        let mut table = ringrunner_protocol::http::HeaderTable::default();
        request::fill_headers(&head, data, &mut table);
        assert!(table.view(data).iter().count() <= head.headers.len());
        let _ = request::uri_and_query(&data[head.target.clone()], head.value(data, "host"));
        let _ = request::remote_addr(
            "10.0.0.1".parse().unwrap(),
            &[request::Subnet::parse("10.0.0.0/8").unwrap()],
            &head,
            data,
        );
        let mut decoder = ChunkedDecoder::default();
        let mut out = Vec::new();
        if let Ok(used) = decoder.decode(&data[head.len..], &mut out) {
            assert!(used <= data.len() - head.len);
        }
    }
});
