//! A stand-in OpenTelemetry collector for the benches: the harness's OTLP/HTTP receiver
//! (`otlp_receiver.rs`) on the address given, counting the spans it decodes (keeping none)
//! and printing the total once a second while it changes. Runs until killed.
//!
//! Usage: otlp-sink 127.0.0.1:4318

use php_client_tests::otlp_receiver::OtlpReceiver;
use std::time::Duration;

/// How often the total is printed.
const REPORT_EVERY: Duration = Duration::from_secs(1);

fn main() {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:4318".to_owned());
    let receiver = match OtlpReceiver::start_counting_on(&address) {
        Ok(receiver) => receiver,
        Err(error) => {
            eprintln!("otlp-sink: bind {address}: {error}");
            std::process::exit(1);
        }
    };
    println!("otlp-sink listening on {}", receiver.address());
    let mut reported = 0;
    loop {
        std::thread::sleep(REPORT_EVERY);
        let spans = receiver.spans_total();
        if spans != reported {
            println!("spans received: {spans}");
            reported = spans;
        }
    }
}
