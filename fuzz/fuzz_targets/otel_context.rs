//! The trace context headers the `otel` middleware reads from any client (`traceparent`,
//! `uber-trace-id`) and the OTLP export message: a context or None, never a panic; a context
//! read is written back and read again as itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringrunner_protocol::otlp::{
    format_traceparent, format_uber_trace_id, parse_traceparent, parse_uber_trace_id,
    ExportTraceServiceRequest,
};

fuzz_target!(|data: &[u8]| {
    if let Some(context) = parse_traceparent(data) {
        assert_eq!(parse_traceparent(&format_traceparent(&context)), Some(context));
    }
    if let Some(context) = parse_uber_trace_id(data) {
        assert_eq!(parse_uber_trace_id(&format_uber_trace_id(&context)), Some(context));
    }
    let _ = ExportTraceServiceRequest::from_protobuf(data);
});
