//! The centrifuge proxy's checks on arbitrary bytes: the protobuf wire-format check (run on
//! every proxy request and every worker answer) never panics, accepts what it accepted
//! before when a well-formed field is appended, and the method lookup never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner_protocol::centrifuge::{check_wire_format, ProxyMethod};

fuzz_target!(|data: &[u8]| {
    let checked = check_wire_format(data);
    if checked.is_ok() {
        // A well-formed string field after a well-formed message keeps it well-formed.
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[0x0a, 0x01, b'x']);
        assert!(check_wire_format(&longer).is_ok());
    }
    if let Ok(name) = std::str::from_utf8(data) {
        let _ = ProxyMethod::from_name(name);
    }
});
