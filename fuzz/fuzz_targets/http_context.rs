//! The worker-facing HTTP decoders on arbitrary bytes: form tree, cookies, response
//! context (both codecs). Never a panic; a parsed form serialises to JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner_protocol::http::{decode_response, parse_urlencoded, CookieJar};
use ringrunner_protocol::Flags;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = parse_urlencoded(data) {
        let mut json = Vec::new();
        tree.write_json(&mut json);
        assert!(json.is_empty() || json[0] == b'{');
    }
    let mut jar = CookieJar::default();
    jar.parse([data]);
    assert!(jar.iter().count() <= data.len());
    // Both in-place walkers, over every header they accepted.
    for codec in [Flags::CODEC_PROTO, Flags::CODEC_JSON] {
        if let Ok(head) = decode_response(codec, data) {
            for (_, values) in head.headers() {
                assert!(values.iter().map(Vec::len).sum::<usize>() <= data.len() * 3);
            }
        }
    }
});
