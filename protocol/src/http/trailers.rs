//! rr's HTTP trailers (spec http §3.1d): a worker's `Trailer` header lists, comma-separated,
//! the names of its headers that go after the body instead of in the head; the `Trailer`
//! header itself is not sent. Front ends ask [`TrailerNames::contains`] of each header.

use super::ResponseHead;

/// The header that lists the trailers.
pub const TRAILER_HEADER: &[u8] = b"trailer";

/// The names one answer's `Trailer` header lists, kept as its values joined by commas.
/// Empty (no allocation) when the worker sent no `Trailer` header, the common case.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TrailerNames {
    listed: Vec<u8>,
}

impl TrailerNames {
    /// The names `head`'s `Trailer` header lists (every line of it).
    #[must_use]
    pub fn of(head: &ResponseHead<'_>) -> Self {
        let mut listed = Vec::new();
        head.for_each_header(|name, values| {
            if name.eq_ignore_ascii_case(TRAILER_HEADER) {
                for value in values {
                    listed.extend_from_slice(value);
                    listed.push(b',');
                }
            }
        });
        Self { listed }
    }

    /// True when no name is listed.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.names().next().is_none()
    }

    /// True when `name` is listed (header names compare without regard to case).
    #[must_use]
    pub fn contains(&self, name: &[u8]) -> bool {
        !name.is_empty() && self.names().any(|listed| listed.eq_ignore_ascii_case(name))
    }

    fn names(&self) -> impl Iterator<Item = &[u8]> {
        self.listed
            .split(|&byte| byte == b',')
            .map(<[u8]>::trim_ascii)
            .filter(|name| !name.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::decode_response;
    use crate::Flags;

    fn head_of(json: &str) -> ResponseHead<'_> {
        decode_response(Flags::CODEC_JSON, json.as_bytes()).unwrap()
    }

    #[test]
    fn every_line_and_every_comma_separated_name_is_listed() {
        let head = head_of(
            r#"{"status":200,"headers":{"Trailer":["X-Sum, x-time ,","X-Other"],"X-Sum":["1"]}}"#,
        );
        let names = TrailerNames::of(&head);
        assert!(!names.is_empty());
        for listed in [&b"X-Sum"[..], b"x-sum", b"X-Time", b"x-other"] {
            assert!(
                names.contains(listed),
                "{}",
                String::from_utf8_lossy(listed)
            );
        }
        assert!(!names.contains(b"X-Kept"));
        assert!(!names.contains(b""));
    }

    #[test]
    fn no_trailer_header_or_an_empty_one_lists_nothing() {
        let none = TrailerNames::of(&head_of(r#"{"status":200,"headers":{"X-A":["1"]}}"#));
        assert!(none.is_empty());
        assert_eq!(none, TrailerNames::default());
        let blank = TrailerNames::of(&head_of(r#"{"status":200,"headers":{"Trailer":[" , "]}}"#));
        assert!(blank.is_empty());
        assert!(!blank.contains(b" "));
    }
}
