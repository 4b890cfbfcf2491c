//! When a head that arrives in pieces is worth parsing again.
//!
//! A head is parsed from the start of the buffer each time; parsing at every read would make
//! a head trickled in small pieces cost its length times the number of pieces (a 1 MiB head
//! sent a byte at a time: about 5 × 10^11 bytes parsed, minutes of a shard). [`HeadScan`] lets
//! the parser run only when the bytes that arrived hold the end of a head, or when the buffer
//! has doubled since the last parse (which still reports a malformed or oversized head
//! early): each byte is scanned for the end once, and the parses sum to at most about three
//! times the head.

/// Tracks one head as its bytes arrive; a new head starts with a new (default) value.
#[derive(Debug, Default, Clone, Copy)]
pub struct HeadScan {
    /// Bytes of the buffer already searched for the end of the head.
    scanned: usize,
    /// The buffer's length at the last parse; 0 before the first.
    parsed_len: usize,
    /// True once any parse ran.
    parsed_once: bool,
}

impl HeadScan {
    /// True when `buf` (the head's bytes so far, from its start) should be parsed now: the
    /// first time, when the bytes since the last call hold an end of head (`\n\r\n` or
    /// `\n\n`), when the buffer has at least doubled since the last parse, or when it is past
    /// `max_head_bytes` (the parser refuses it).
    pub fn worth_parsing(&mut self, buf: &[u8], max_head_bytes: usize) -> bool {
        // The first parse needs no search (a head in one read, the common case, is looked at
        // once); bytes a parse covered need none either: it would have found their end.
        let ends_here = self.parsed_once && {
            // A marker may straddle the previous end: look two bytes back.
            let from = self.scanned.saturating_sub(2).min(buf.len());
            has_head_end(&buf[from..])
        };
        self.scanned = buf.len();
        let due = !self.parsed_once
            || ends_here
            || buf.len() >= self.parsed_len.saturating_mul(2)
            || buf.len() > max_head_bytes;
        if due {
            self.parsed_once = true;
            self.parsed_len = buf.len();
        }
        due
    }
}

/// True when `bytes` hold a blank line after a line end (`\n\r\n` or `\n\n`).
fn has_head_end(bytes: &[u8]) -> bool {
    let mut at = 0;
    while let Some(offset) = bytes[at..].iter().position(|&byte| byte == b'\n') {
        let after = &bytes[at + offset + 1..];
        if after.starts_with(b"\n") || after.starts_with(b"\r\n") {
            return true;
        }
        at += offset + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::Head;

    /// Feeds `text` in pieces of `piece` bytes; returns (parses run, whether the head parsed).
    fn feed(text: &[u8], piece: usize) -> (usize, bool) {
        let mut scan = HeadScan::default();
        let mut head = Head::default();
        let mut parses = 0;
        for end in (piece..text.len() + piece).step_by(piece) {
            let buf = &text[..end.min(text.len())];
            if scan.worth_parsing(buf, 1 << 20) {
                parses += 1;
                if let Ok(Some(())) = Head::parse(buf, &mut head) {
                    return (parses, true);
                }
            }
        }
        (parses, false)
    }

    #[test]
    fn a_trickled_head_is_parsed_a_logarithmic_number_of_times() {
        let mut text = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 0..5_000 {
            text.extend_from_slice(format!("X-A: {i}\r\n").as_bytes());
        }
        // Too many lines for the parser, but only the end says so: each piece is scanned.
        text.extend_from_slice(b"\r\n");
        let (parses, _) = feed(&text, 1);
        assert!(parses < 40, "{parses} parses");
        let small = b"GET / HTTP/1.1\r\nHost: h\r\nX: y\r\n\r\n";
        for piece in 1..small.len() {
            assert!(feed(small, piece).1, "pieces of {piece}");
        }
        // Bare LF heads end too.
        assert!(feed(b"GET / HTTP/1.1\nHost: h\n\n", 1).1);
    }

    #[test]
    fn the_end_is_found_across_pieces_and_garbage_is_parsed_early() {
        let mut scan = HeadScan::default();
        assert!(scan.worth_parsing(b"GET / HTTP/1.1\r\nHost: a", 1024));
        assert!(!scan.worth_parsing(b"GET / HTTP/1.1\r\nHost: ab\r", 1024));
        assert!(scan.worth_parsing(b"GET / HTTP/1.1\r\nHost: ab\r\n\r\n", 1024));
        let mut past = HeadScan::default();
        assert!(past.worth_parsing(b"GET / HTTP/1.1\r\nX: 0123456789", 8));
        assert!(past.worth_parsing(b"GET / HTTP/1.1\r\nX: 0123456789a", 8));
    }

    proptest::proptest! {
        #[test]
        fn the_scan_never_misses_a_complete_head(
            lines in proptest::collection::vec("[a-z]{1,8}", 0..20),
            piece in 1usize..64,
        ) {
            let mut text = b"GET /x HTTP/1.1\r\nHost: h\r\n".to_vec();
            for line in &lines {
                text.extend_from_slice(format!("X-{line}: {line}\r\n").as_bytes());
            }
            text.extend_from_slice(b"\r\n");
            proptest::prop_assert!(feed(&text, piece).1);
        }
    }
}
