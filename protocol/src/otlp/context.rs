//! Trace context headers: W3C `traceparent` (`00-<trace id>-<span id>-<flags>`, lowercase
//! hex) and Jaeger's `uber-trace-id` (`<trace id>:<span id>:<parent>:<flags>`, ids in hex
//! of up to 32 and 16 digits, possibly percent-encoded), as Go's OpenTelemetry propagators
//! read and write them. Every function takes any bytes: a header that is not valid gives
//! `None`, never a panic.

/// A remote or local span's identity, as a header carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// Never all zero.
    pub trace_id: [u8; 16],
    /// Never all zero.
    pub span_id: [u8; 8],
    /// The caller records it (W3C flag bit 0, Jaeger's sampled or debug bit).
    pub sampled: bool,
}

/// The length of a version-00 `traceparent`.
pub const TRACEPARENT_LEN: usize = 55;

/// The length of the `uber-trace-id` written (full-length ids).
pub const UBER_TRACE_ID_LEN: usize = 53;

/// The longest `uber-trace-id` read (ids, parent and flags with room for percent escapes):
/// a longer one is not a valid header.
const UBER_TRACE_ID_BYTES_MAX: usize = 256;

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

fn hex_value(byte: u8, uppercase_too: bool) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' if uppercase_too => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// Fills `out` from exactly `out.len() * 2` lowercase hex digits.
fn decode_hex_exact(digits: &[u8], out: &mut [u8]) -> Option<()> {
    if digits.len() != out.len() * 2 {
        return None;
    }
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_value(pair[0], false)? << 4) | hex_value(pair[1], false)?;
    }
    Some(())
}

/// Fills `out` from up to `out.len() * 2` hex digits, right-aligned (Jaeger's ids may drop
/// leading zeros).
fn decode_hex_padded(digits: &[u8], out: &mut [u8]) -> Option<()> {
    if digits.is_empty() || digits.len() > out.len() * 2 {
        return None;
    }
    out.fill(0);
    let total = out.len() * 2;
    for (index, &digit) in digits.iter().enumerate() {
        let nibble = hex_value(digit, true)?;
        let position = total - digits.len() + index;
        let byte = &mut out[position / 2];
        if position.is_multiple_of(2) {
            *byte |= nibble << 4;
        } else {
            *byte |= nibble;
        }
    }
    Some(())
}

/// Writes `bytes` as lowercase hex into `out` (twice as long).
fn write_hex(bytes: &[u8], out: &mut [u8]) {
    debug_assert_eq!(out.len(), bytes.len() * 2);
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = HEX_DIGITS[usize::from(byte >> 4)];
        pair[1] = HEX_DIGITS[usize::from(byte & 0x0f)];
    }
}

fn valid_ids(trace_id: &[u8; 16], span_id: &[u8; 8]) -> bool {
    trace_id.iter().any(|&b| b != 0) && span_id.iter().any(|&b| b != 0)
}

/// Reads a `traceparent` as Go's TraceContext propagator does: version `ff` is invalid,
/// version `00` is exactly 55 bytes, a later version may carry more after a `-`.
#[must_use]
pub fn parse_traceparent(value: &[u8]) -> Option<SpanContext> {
    if value.len() < TRACEPARENT_LEN {
        return None;
    }
    let mut version = [0u8; 1];
    decode_hex_exact(&value[..2], &mut version)?;
    match version[0] {
        0xff => return None,
        0 if value.len() != TRACEPARENT_LEN => return None,
        _ if value.len() > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
        _ => {}
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let mut context = SpanContext {
        trace_id: [0; 16],
        span_id: [0; 8],
        sampled: false,
    };
    decode_hex_exact(&value[3..35], &mut context.trace_id)?;
    decode_hex_exact(&value[36..52], &mut context.span_id)?;
    let mut flags = [0u8; 1];
    decode_hex_exact(&value[53..55], &mut flags)?;
    context.sampled = flags[0] & 1 == 1;
    valid_ids(&context.trace_id, &context.span_id).then_some(context)
}

/// `00-<trace id>-<span id>-<01|00>` (on the stack: no allocation per request).
#[must_use]
pub fn format_traceparent(context: &SpanContext) -> [u8; TRACEPARENT_LEN] {
    let mut out = [0u8; TRACEPARENT_LEN];
    out[..3].copy_from_slice(b"00-");
    write_hex(&context.trace_id, &mut out[3..35]);
    out[35] = b'-';
    write_hex(&context.span_id, &mut out[36..52]);
    out[52..].copy_from_slice(if context.sampled { b"-01" } else { b"-00" });
    out
}

/// Percent-decodes `value` into `out` (Go's propagator unescapes the header first); None
/// when too long or a `%` is not followed by two hex digits.
fn percent_decode<'a>(
    value: &[u8],
    out: &'a mut [u8; UBER_TRACE_ID_BYTES_MAX],
) -> Option<&'a [u8]> {
    let mut len = 0;
    let mut index = 0;
    while index < value.len() {
        let byte = match value[index] {
            b'%' => {
                let high = hex_value(*value.get(index + 1)?, true)?;
                let low = hex_value(*value.get(index + 2)?, true)?;
                index += 3;
                (high << 4) | low
            }
            byte => {
                index += 1;
                byte
            }
        };
        *out.get_mut(len)? = byte;
        len += 1;
    }
    Some(&out[..len])
}

/// Reads an `uber-trace-id`: four `:`-separated parts, the trace id in up to 32 hex digits,
/// the span id in up to 16, the (deprecated) parent id ignored, the flags' bit 0 (sampled)
/// or bit 1 (debug) sampling it.
#[must_use]
pub fn parse_uber_trace_id(value: &[u8]) -> Option<SpanContext> {
    let mut decoded = [0u8; UBER_TRACE_ID_BYTES_MAX];
    let value = percent_decode(value, &mut decoded)?;
    let mut parts = value.split(|&b| b == b':');
    let (trace, span, _parent, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || flags.is_empty() || flags.len() > 2 {
        return None;
    }
    let mut context = SpanContext {
        trace_id: [0; 16],
        span_id: [0; 8],
        sampled: false,
    };
    decode_hex_padded(trace, &mut context.trace_id)?;
    decode_hex_padded(span, &mut context.span_id)?;
    let mut flag_bits = [0u8; 1];
    decode_hex_padded(flags, &mut flag_bits)?;
    context.sampled = flag_bits[0] & 0b11 != 0;
    valid_ids(&context.trace_id, &context.span_id).then_some(context)
}

/// `<trace id>:<span id>:0:<1|0>` (Go's Jaeger propagator's form, full-length ids).
#[must_use]
pub fn format_uber_trace_id(context: &SpanContext) -> [u8; UBER_TRACE_ID_LEN] {
    let mut out = [0u8; UBER_TRACE_ID_LEN];
    write_hex(&context.trace_id, &mut out[..32]);
    out[32] = b':';
    write_hex(&context.span_id, &mut out[33..49]);
    out[49..].copy_from_slice(if context.sampled { b":0:1" } else { b":0:0" });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &[u8] = b"4bf92f3577b34da6a3ce929d0e0e4736";

    #[test]
    fn a_w3c_example_is_read_and_written_back() {
        let header = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse_traceparent(header).expect("valid");
        assert!(context.sampled);
        assert_eq!(
            context.span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert_eq!(&format_traceparent(&context)[..], header);
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for header in [
            &b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"[..],
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            b"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            b"",
        ] {
            assert_eq!(
                parse_traceparent(header),
                None,
                "{}",
                String::from_utf8_lossy(header)
            );
        }
        let later = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        assert_eq!(parse_traceparent(later).map(|c| c.sampled), Some(false));
    }

    #[test]
    fn uber_trace_ids_are_padded_and_unescaped() {
        let context = parse_uber_trace_id(b"abc%3A1f:0:1").expect("valid");
        assert_eq!(context.trace_id[15], 0xbc);
        assert_eq!(context.trace_id[14], 0x0a);
        assert_eq!(context.span_id, [0, 0, 0, 0, 0, 0, 0, 0x1f]);
        assert!(context.sampled);
        let mut header = TRACE.to_vec();
        header.extend_from_slice(b":00f067aa0ba902b7:0:0");
        let context = parse_uber_trace_id(&header).expect("valid");
        assert!(!context.sampled);
        assert_eq!(&format_uber_trace_id(&context)[..], header);
        for bad in [
            &b"abc:1f:0"[..],
            b"0:1f:0:1",
            b"abc:0:0:1",
            b"abc:1f:0:1:2",
            b"xyz:1f:0:1",
            b"abc%3:1f:0:1",
        ] {
            assert_eq!(parse_uber_trace_id(bad), None);
        }
    }
}
