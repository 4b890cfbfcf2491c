//! The HTTP head parser, framing rules, chunked decoder and request helpers on arbitrary
//! bytes: never a panic, ranges always inside the buffer; a head and a chunked body fed in
//! pieces (as the server reads them) end as they do in one piece.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner::plugins::http::head::{ChunkedDecoder, Head};
use ringrunner::plugins::http::request;
use ringrunner_protocol::http1::{HeadScan, MAX_HEAD_BYTES};

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
        let whole = decoder.decode(&data[head.len..], &mut out);
        if let Ok(used) = whole {
            assert!(used <= data.len() - head.len);
        }
        // The same body in pieces: the same data and end as in one piece (its trailer
        // section kept, as the HTTP/2 relay keeps an answer's, within its bound).
        let piece = usize::from(data[0] % 7) + 1;
        let mut pieces = ChunkedDecoder::default().keeping_trailers();
        let (mut pending, mut decoded) = (Vec::new(), Vec::new());
        let mut failed = false;
        for part in data[head.len..].chunks(piece) {
            pending.extend_from_slice(part);
            match pieces.decode(&pending, &mut decoded) {
                Ok(used) => drop(pending.drain(..used)),
                Err(_) => {
                    failed = true;
                    break;
                }
            }
            if pieces.is_done() {
                break;
            }
        }
        if decoder.is_done() && !failed {
            assert!(pieces.is_done());
            assert_eq!(out, decoded);
        }
        let trailer_bytes_max =
            ringrunner_protocol::http1::Http1Limits::default().max_trailer_bytes;
        assert!(pieces.trailers().len() <= trailer_bytes_max);
    }
    // A head in pieces: parsed only when HeadScan says, it still completes.
    let piece = usize::from(data.first().copied().unwrap_or(0) % 13) + 1;
    let mut scan = HeadScan::default();
    let mut pieced = Head::default();
    let mut end = 0;
    let complete = loop {
        end = (end + piece).min(data.len());
        let buf = &data[..end];
        if scan.worth_parsing(buf, MAX_HEAD_BYTES) {
            match Head::parse(buf, &mut pieced) {
                Ok(Some(())) => break true,
                Err(_) => break false,
                Ok(None) => {}
            }
        }
        if end == data.len() {
            break false;
        }
    };
    if complete {
        assert!(pieced.len <= data.len());
    }
});
