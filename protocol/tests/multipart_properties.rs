//! The multipart splitter: never a panic on any input, and a form we build is read back
//! exactly, whatever bytes the parts hold.

use proptest::prelude::*;
use ringrunner_protocol::http::multipart;

fn build(boundary: &str, parts: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut body = b"preamble\r\n".to_vec();
    for (name, data) in parts {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"f\"\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

proptest! {
    #[test]
    fn any_bytes_never_panic(boundary in "[a-zA-Z0-9'()+_,./:=?-]{1,70}", body in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = multipart::parse(&body, boundary.as_bytes());
    }

    #[test]
    fn mangled_forms_never_panic(cut in 0usize..400, flip in 0usize..400, byte in any::<u8>()) {
        let mut body = build("X", &[("a".into(), b"1".to_vec()), ("b[]".into(), b"--X-\r\n".to_vec())]);
        let flip = flip % body.len();
        body[flip] = byte;
        body.truncate(cut.min(body.len()));
        let _ = multipart::parse(&body, b"X");
    }

    #[test]
    fn built_forms_read_back_exactly(
        parts in prop::collection::vec(("[a-z]{1,8}(\\[[a-z0-9]{0,3}\\])?", prop::collection::vec(any::<u8>(), 0..300)), 0..6),
    ) {
        let body = build("b0UnD", &parts);
        let parsed = multipart::parse(&body, b"b0UnD").unwrap();
        prop_assert_eq!(parsed.len(), parts.len());
        for (part, (name, data)) in parsed.iter().zip(&parts) {
            prop_assert_eq!(&part.name, name);
            prop_assert_eq!(part.data, &data[..]);
            prop_assert_eq!(part.filename.as_deref(), Some("f"));
        }
    }
}
