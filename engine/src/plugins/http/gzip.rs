//! The `gzip` middleware's rules (spec http-extras §4): who accepts gzip, which answers are
//! compressed, and the compression itself (flate2 on zlib-rs, default level).

use ringrunner_protocol::http::ResponseHead;
use std::io::Write as _;

/// Bodies below this many bytes (by their `Content-Length`) stay as they are.
pub const MIN_SIZE: u64 = 1024;

/// The largest static file compressed (read whole, compressed whole): larger ones go as
/// they are, with `Vary: Accept-Encoding`.
pub const STATIC_MAX: u64 = 8 << 20;

/// True when `Accept-Encoding` (every value of it) names the coding `gzip` with q > 0
/// (`*` and `x-gzip` do not count; the first `gzip` decides).
#[must_use]
pub fn accepts_gzip<'a>(values: impl Iterator<Item = &'a [u8]>) -> bool {
    for value in values {
        for entry in value.split(|b| *b == b',') {
            let entry = String::from_utf8_lossy(entry);
            let mut parts = entry.split(';');
            let coding = parts.next().unwrap_or_default().trim();
            if !coding.eq_ignore_ascii_case("gzip") {
                continue;
            }
            let q = parts
                .filter_map(|param| param.trim().split_once('='))
                .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
                .map_or(Some(1.0), |(_, value)| value.trim().parse::<f64>().ok());
            return q.is_some_and(|q| q > 0.0);
        }
    }
    false
}

/// False for types that are compressed already (or not worth it): archives, video, audio,
/// JPEG (gzhttp's filter as rr runs it).
#[must_use]
pub fn type_compressible(content_type: &str) -> bool {
    let kind = content_type.to_ascii_lowercase();
    let packed = [
        "compress", "zip", "snappy", "lzma", "xz", "zstd", "brotli", "stuffit",
    ];
    !(packed.iter().any(|word| kind.contains(word))
        || kind.starts_with("video/")
        || kind.starts_with("audio/")
        || kind.starts_with("image/jp"))
}

/// `data` gzip-compressed (default level).
#[must_use]
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(data.len() / 3 + 64),
        flate2::Compression::default(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(data);
    encoder.finish().unwrap_or_default()
}

/// Whether gzip's rules take the worker's answer: no `Content-Encoding`, `Content-Range` or
/// `No-Gzip-Compression` from the worker, no `Content-Length` under 1 KiB, a type (the
/// worker's, else sniffed from the first bytes) worth compressing.
pub fn allowed(head: &ResponseHead<'_>, body: &[u8]) -> bool {
    let mut blocked = false;
    let mut content_type = None;
    let mut length = None;
    head.for_each_header(|name, values| {
        let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
        if is(b"content-encoding") || is(b"content-range") || is(b"no-gzip-compression") {
            blocked = true;
        } else if is(b"content-type") {
            content_type = values
                .next()
                .map(|v| String::from_utf8_lossy(v).into_owned());
        } else if is(b"content-length") {
            length = values
                .next()
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse::<u64>().ok());
        }
    });
    if blocked || length.is_some_and(|length| length < MIN_SIZE) {
        return false;
    }
    let kind = content_type.unwrap_or_else(|| super::wire::sniff_content_type(body).to_owned());
    type_compressible(&kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn negotiation_as_gzhttp() {
        let accepts = |value: &str| accepts_gzip(std::iter::once(value.as_bytes()));
        assert!(accepts("gzip"));
        assert!(accepts("br, GZIP;q=0.5"));
        assert!(accepts("deflate, gzip ; q=1"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("gzip;q=0.0, gzip"));
        assert!(!accepts("*"));
        assert!(!accepts("x-gzip"));
        assert!(!accepts(""));
        assert!(!accepts_gzip(std::iter::empty()));
    }

    #[test]
    fn packed_types_are_left_alone() {
        assert!(type_compressible("application/json"));
        assert!(type_compressible("image/png"));
        assert!(type_compressible("text/html; charset=utf-8"));
        assert!(!type_compressible("image/jpeg"));
        assert!(!type_compressible("application/zip"));
        assert!(!type_compressible("video/mp4"));
        assert!(!type_compressible("application/x-XZ"));
    }

    #[test]
    fn compressed_bytes_are_gzip() {
        let data = b"hello hello hello hello hello hello".repeat(100);
        let packed = compress(&data);
        assert!(packed.len() < data.len() / 10);
        let mut unpacked = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut unpacked)
            .unwrap();
        assert_eq!(unpacked, data);
    }
}
