//! Property tests: any header bytes are read without a panic, and what is written is read
//! back as the same context.

use super::context::*;
use proptest::prelude::*;

fn any_context() -> impl Strategy<Value = SpanContext> {
    (any::<[u8; 16]>(), any::<[u8; 8]>(), any::<bool>())
        .prop_filter("ids are not all zero", |(trace, span, _)| {
            trace.iter().any(|&b| b != 0) && span.iter().any(|&b| b != 0)
        })
        .prop_map(|(trace_id, span_id, sampled)| SpanContext {
            trace_id,
            span_id,
            sampled,
        })
}

proptest! {
    #[test]
    fn any_bytes_are_read_without_a_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_traceparent(&bytes);
        let _ = parse_uber_trace_id(&bytes);
    }

    #[test]
    fn near_valid_headers_are_read_without_a_panic(
        header in "[0-9a-fA-F%:-]{0,80}",
    ) {
        let _ = parse_traceparent(header.as_bytes());
        let _ = parse_uber_trace_id(header.as_bytes());
    }

    #[test]
    fn a_written_traceparent_reads_back(context in any_context()) {
        let out = format_traceparent(&context);
        prop_assert_eq!(parse_traceparent(&out), Some(context));
    }

    #[test]
    fn a_written_uber_trace_id_reads_back(context in any_context()) {
        let out = format_uber_trace_id(&context);
        prop_assert_eq!(parse_uber_trace_id(&out), Some(context));
    }
}
