//! The pure half of the `static` middleware (spec http-extras §2): which requests it takes,
//! rr's ETags, Go `ServeContent`'s conditional requests and byte ranges, content types.

use std::path::{Component, Path, PathBuf};

/// What the middleware does with a request path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Not a static file: the next handler (the worker) gets it.
    Pass,
    /// `..` in the path: 403, empty body.
    Forbidden,
    /// Try this file (relative to the root); a missing one or a directory passes.
    Try(PathBuf),
}

/// Steps 1–4 of spec §2.2 on the decoded path `path`.
#[must_use]
pub fn decide(path: &str, forbid: &[String], allow: &[String]) -> Decision {
    if path.contains("..") {
        return Decision::Forbidden;
    }
    let path: String = path.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    let last = path.rsplit('/').next().unwrap_or_default();
    let Some(dot) = last.rfind('.') else {
        return Decision::Pass;
    };
    let extension = last[dot..].to_ascii_lowercase();
    if forbid.contains(&extension) || (!allow.is_empty() && !allow.contains(&extension)) {
        return Decision::Pass;
    }
    // `.` segments and repeated slashes go; `..` cannot be here (step 1).
    let relative: PathBuf = Path::new(&path)
        .components()
        .filter(|component| matches!(component, Component::Normal(_)))
        .collect();
    Decision::Try(relative)
}

/// Percent-decodes a request target's path (up to `?`); `None` for a bad escape or bytes
/// that are not UTF-8 (Go's URL parser refuses those before any handler).
#[must_use]
pub fn decoded_path(target: &[u8]) -> Option<String> {
    let path = target.split(|b| *b == b'?').next().unwrap_or_default();
    // An absolute-form target (`http://host/path`): its path.
    let path = match path.windows(3).position(|w| w == b"://") {
        Some(at) => {
            let rest = &path[at + 3..];
            rest.iter()
                .position(|b| *b == b'/')
                .map_or(&b"/"[..], |slash| &rest[slash..])
        }
        None => path,
    };
    ringrunner_protocol::http::percent_decode(path, false)
}

/// The CRC-32 table of rr's ETags: Go's `crc32.MakeTable(0x48D90782)`.
const fn etag_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x48D9_0782
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

static ETAG_TABLE: [u32; 256] = etag_table();

/// rr's ETag checksum over `bytes`, continuing `crc` (start with 0).
#[must_use]
pub fn etag_crc(crc: u32, bytes: &[u8]) -> u32 {
    let mut crc = !crc;
    for byte in bytes {
        crc = ETAG_TABLE[((crc ^ u32::from(*byte)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

/// A strong ETag: `"<length>-<crc>"`; `None` for an empty file.
#[must_use]
pub fn strong_etag(length: u64, crc: u32) -> Option<String> {
    (length > 0).then(|| format!("\"{length}-{crc}\""))
}

/// A weak ETag: `W/"<crc of the file name>"` (rr's: the name only).
#[must_use]
pub fn weak_etag(name: &str) -> String {
    format!("W/\"{}\"", etag_crc(0, name.as_bytes()))
}

/// A byte range, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// First byte.
    pub start: u64,
    /// Last byte.
    pub end: u64,
}

impl ByteRange {
    /// Bytes in the range.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    /// Never empty (both ends are included).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// Ranges asked for at most: more is answered with the whole file (bounded work).
pub const MAX_RANGES: usize = 64;

/// What a `Range` header asks of a file of `size` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable header: the whole file (also when the ranges add up to more than it).
    Whole,
    /// 206 with these ranges.
    Partial(Vec<ByteRange>),
    /// 416.
    Unsatisfiable,
}

/// Parses `Range: bytes=…` as Go's `parseRange` does.
#[must_use]
pub fn parse_range(header: &str, size: u64) -> RangeAsk {
    let Some(specs) = header.strip_prefix("bytes=") else {
        return RangeAsk::Unsatisfiable;
    };
    let mut ranges = Vec::new();
    let mut any_overlap_start = false;
    for spec in specs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if ranges.len() == MAX_RANGES {
            return RangeAsk::Whole;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return RangeAsk::Unsatisfiable;
        };
        let (first, last) = (first.trim(), last.trim());
        let range = if first.is_empty() {
            // `-n`: the last n bytes.
            let Ok(n) = last.parse::<u64>() else {
                return RangeAsk::Unsatisfiable;
            };
            if n == 0 || size == 0 {
                continue;
            }
            ByteRange {
                start: size.saturating_sub(n),
                end: size - 1,
            }
        } else {
            let Ok(start) = first.parse::<u64>() else {
                return RangeAsk::Unsatisfiable;
            };
            if start >= size {
                any_overlap_start = true;
                continue;
            }
            let end = if last.is_empty() {
                size - 1
            } else {
                match last.parse::<u64>() {
                    Ok(end) if end >= start => end.min(size - 1),
                    _ => return RangeAsk::Unsatisfiable,
                }
            };
            ByteRange { start, end }
        };
        ranges.push(range);
    }
    if ranges.is_empty() {
        let _ = any_overlap_start;
        return RangeAsk::Unsatisfiable;
    }
    if ranges.iter().map(ByteRange::len).sum::<u64>() > size {
        return RangeAsk::Whole;
    }
    RangeAsk::Partial(ranges)
}

/// The outcome of the conditional headers (Go `checkPreconditions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Serve.
    Serve,
    /// 304 Not Modified.
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

/// The request's conditional headers, as text.
#[derive(Debug, Default, Clone, Copy)]
pub struct Conditions<'a> {
    /// `If-Match`.
    pub if_match: Option<&'a str>,
    /// `If-Unmodified-Since`.
    pub if_unmodified_since: Option<&'a str>,
    /// `If-None-Match`.
    pub if_none_match: Option<&'a str>,
    /// `If-Modified-Since`.
    pub if_modified_since: Option<&'a str>,
}

fn etag_list_matches(list: &str, etag: Option<&str>, weak: bool) -> bool {
    let Some(etag) = etag else {
        return false;
    };
    let opaque = |tag: &str| -> Option<(bool, String)> {
        let tag = tag.trim();
        let (is_weak, rest) = match tag.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        (rest.len() >= 2 && rest.starts_with('"') && rest.ends_with('"'))
            .then(|| (is_weak, rest.to_owned()))
    };
    let Some((ours_weak, ours)) = opaque(etag) else {
        return false;
    };
    list.split(',').any(|candidate| {
        if candidate.trim() == "*" {
            return true;
        }
        opaque(candidate).is_some_and(|(theirs_weak, theirs)| {
            theirs == ours && (weak || (!theirs_weak && !ours_weak))
        })
    })
}

/// Go's conditional-request rules for a file with `etag` modified at `mtime` (Unix
/// seconds), for a GET or HEAD (`get_or_head`) or another method.
#[must_use]
pub fn precondition(
    conditions: &Conditions<'_>,
    etag: Option<&str>,
    mtime: u64,
    get_or_head: bool,
) -> Precondition {
    if let Some(list) = conditions.if_match {
        if !etag_list_matches(list, etag, false) {
            return Precondition::Failed;
        }
    } else if let Some(since) = conditions.if_unmodified_since.and_then(parse_http_date) {
        if mtime > 0 && mtime > since {
            return Precondition::Failed;
        }
    }
    if let Some(list) = conditions.if_none_match {
        if etag_list_matches(list, etag, true) {
            return if get_or_head {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if get_or_head {
        if let Some(since) = conditions.if_modified_since.and_then(parse_http_date) {
            if mtime > 0 && mtime <= since {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Serve
}

/// Parses an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) into Unix seconds; the two
/// obsolete forms Go also accepts are taken as absent.
#[must_use]
pub fn parse_http_date(text: &str) -> Option<u64> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let fields: Vec<&str> = text.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = fields.as_slice() else {
        return None;
    };
    let day: u64 = day.parse().ok()?;
    let month = MONTHS.iter().position(|m| m == month)? as u64 + 1;
    let year: i64 = year.parse().ok()?;
    let mut clock = time.split(':').map(|part| part.parse::<u64>());
    let (hour, minute, second) = (
        clock.next()?.ok()?,
        clock.next()?.ok()?,
        clock.next()?.ok()?,
    );
    // Days from the civil date (Howard Hinnant's days-from-civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe as u64 * 365 + yoe as u64 / 4 - yoe as u64 / 100 + doy;
    let days = era * 146_097 + doe as i64 - 719_468;
    u64::try_from(days)
        .ok()
        .map(|days| days * 86_400 + hour * 3600 + minute * 60 + second)
}

/// Go's built-in types by extension (its `mime` package table), which rr serves with.
const BUILTIN_TYPES: [(&str, &str); 17] = [
    (".avif", "image/avif"),
    (".css", "text/css; charset=utf-8"),
    (".gif", "image/gif"),
    (".htm", "text/html; charset=utf-8"),
    (".html", "text/html; charset=utf-8"),
    (".jpeg", "image/jpeg"),
    (".jpg", "image/jpeg"),
    (".js", "text/javascript; charset=utf-8"),
    (".json", "application/json"),
    (".mjs", "text/javascript; charset=utf-8"),
    (".pdf", "application/pdf"),
    (".png", "image/png"),
    (".svg", "image/svg+xml"),
    (".wasm", "application/wasm"),
    (".webp", "image/webp"),
    (".xml", "text/xml; charset=utf-8"),
    (".ico", "image/vnd.microsoft.icon"),
];

/// Content types by extension: Go's table, then the system's `/etc/mime.types` for the
/// rest (as Go merges them), read once at start.
#[derive(Debug, Clone, Default)]
pub struct MimeTypes {
    system: std::collections::HashMap<String, String>,
}

impl MimeTypes {
    /// Reads `mime.types` text (`type ext ext…` lines).
    #[must_use]
    pub fn from_mime_types(text: &str) -> Self {
        let mut system = std::collections::HashMap::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_whitespace();
            let Some(kind) = fields.next() else { continue };
            for extension in fields {
                let kind = if kind.starts_with("text/") {
                    format!("{kind}; charset=utf-8")
                } else {
                    kind.to_owned()
                };
                system
                    .entry(format!(".{}", extension.to_ascii_lowercase()))
                    .or_insert(kind);
            }
        }
        Self { system }
    }

    /// The type of `name`'s extension, if known.
    #[must_use]
    pub fn by_name(&self, name: &str) -> Option<&str> {
        let extension = name
            .rfind('.')
            .map(|dot| name[dot..].to_ascii_lowercase())?;
        BUILTIN_TYPES
            .iter()
            .find(|(known, _)| *known == extension)
            .map(|(_, kind)| *kind)
            .or_else(|| self.system.get(&extension).map(String::as_str))
    }
}

/// Go's sniffing, reduced to what a static file server needs: text is
/// `text/plain; charset=utf-8`, anything with binary bytes `application/octet-stream`.
#[must_use]
pub fn sniff(head: &[u8]) -> &'static str {
    let text = std::str::from_utf8(head).is_ok_and(|text| {
        !text
            .bytes()
            .any(|b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c | 0x1b))
    });
    if text {
        "text/plain; charset=utf-8"
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn ranges_parse_without_panic_and_stay_inside_the_file(
            header in "(bytes=)?[0-9, -]{0,60}",
            size in 0u64..5_000,
        ) {
            if let RangeAsk::Partial(ranges) = parse_range(&header, size) {
                prop_assert!(!ranges.is_empty() && ranges.len() <= MAX_RANGES);
                let mut total = 0;
                for range in ranges {
                    prop_assert!(range.start <= range.end && range.end < size);
                    total += range.len();
                }
                prop_assert!(total <= size);
            }
        }

        #[test]
        fn targets_decode_and_decide_without_panic(target in proptest::collection::vec(any::<u8>(), 0..120)) {
            if let Some(path) = decoded_path(&target) {
                if let Decision::Try(relative) = decide(&path, &[], &[]) {
                    prop_assert!(relative.components().all(|c| matches!(c, std::path::Component::Normal(_))));
                }
            }
        }

        #[test]
        fn http_dates_read_back_what_we_write(seconds in 0u64..4_102_444_800) {
            let text = ringrunner_protocol::http1::response::imf_fixdate(seconds);
            prop_assert_eq!(parse_http_date(&text), Some(seconds));
        }

        #[test]
        fn any_date_text_parses_without_panic(text in ".{0,40}") {
            let _ = parse_http_date(&text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn rr_s_decision_procedure() {
        let (forbid, none) = (strings(&[".php"]), Vec::new());
        assert_eq!(decide("/a/../b.css", &none, &none), Decision::Forbidden);
        assert_eq!(decide("/a..b.css", &none, &none), Decision::Forbidden);
        assert_eq!(decide("/", &none, &none), Decision::Pass);
        assert_eq!(decide("/about", &none, &none), Decision::Pass);
        assert_eq!(decide("/index.php", &forbid, &none), Decision::Pass);
        assert_eq!(decide("/INDEX.PHP", &forbid, &none), Decision::Pass);
        assert_eq!(
            decide("/css//./app.css", &forbid, &none),
            Decision::Try("css/app.css".into())
        );
        assert_eq!(decide("/a.js", &none, &strings(&[".css"])), Decision::Pass);
        assert_eq!(decide("/.env", &none, &none), Decision::Try(".env".into()));
        assert_eq!(decoded_path(b"/a%20b.css?x=1").as_deref(), Some("/a b.css"));
        assert_eq!(decoded_path(b"http://h/x.css").as_deref(), Some("/x.css"));
        assert_eq!(decoded_path(b"/%zz"), None);
        assert_eq!(decoded_path(b"/%2e%2e/x").as_deref(), Some("/../x"));
    }

    #[test]
    fn etags_as_rr_computes_them() {
        assert_eq!(etag_crc(0, b"123456789"), 3_639_822_934);
        assert_eq!(
            strong_etag(12, etag_crc(0, b"hello world\n")).unwrap(),
            "\"12-4004000938\""
        );
        assert_eq!(strong_etag(0, 0), None);
        assert_eq!(weak_etag("style.css"), "W/\"3301492019\"");
        assert_eq!(weak_etag("app.js"), "W/\"2480026375\"");
        let split = etag_crc(etag_crc(0, b"hello "), b"world\n");
        assert_eq!(split, etag_crc(0, b"hello world\n"));
    }

    #[test]
    fn ranges_as_go_parses_them() {
        let one = |start, end| RangeAsk::Partial(vec![ByteRange { start, end }]);
        assert_eq!(parse_range("bytes=0-4", 10), one(0, 4));
        assert_eq!(parse_range("bytes=5-", 10), one(5, 9));
        assert_eq!(parse_range("bytes=-3", 10), one(7, 9));
        assert_eq!(parse_range("bytes=-30", 10), one(0, 9));
        assert_eq!(parse_range("bytes=8-20", 10), one(8, 9));
        assert_eq!(parse_range("bytes=10-", 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=5-2", 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("items=0-1", 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-5,3-9", 10), RangeAsk::Whole);
        assert_eq!(
            parse_range("bytes=0-1,4-5", 10),
            RangeAsk::Partial(vec![
                ByteRange { start: 0, end: 1 },
                ByteRange { start: 4, end: 5 }
            ])
        );
        let many = format!("bytes={}", vec!["0-0"; 1000].join(","));
        assert_eq!(parse_range(&many, 100_000), RangeAsk::Whole);
    }

    #[test]
    fn conditional_requests_in_go_s_order() {
        let mtime = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(mtime, 784_111_777);
        let etag = Some("\"12-1\"");
        let check = |conditions: Conditions<'_>, get| precondition(&conditions, etag, mtime, get);
        assert_eq!(check(Conditions::default(), true), Precondition::Serve);
        let none_match = Conditions {
            if_none_match: Some("\"12-1\""),
            ..Default::default()
        };
        assert_eq!(check(none_match, true), Precondition::NotModified);
        assert_eq!(check(none_match, false), Precondition::Failed);
        let weak = Conditions {
            if_none_match: Some("W/\"12-1\", \"x\""),
            ..Default::default()
        };
        assert_eq!(check(weak, true), Precondition::NotModified);
        let star = Conditions {
            if_none_match: Some("*"),
            ..Default::default()
        };
        assert_eq!(check(star, true), Precondition::NotModified);
        let other = Conditions {
            if_none_match: Some("\"9-9\""),
            if_modified_since: Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            ..Default::default()
        };
        assert_eq!(
            check(other, true),
            Precondition::Serve,
            "If-None-Match wins"
        );
        let since = Conditions {
            if_modified_since: Some("Sun, 06 Nov 1994 08:49:37 GMT"),
            ..Default::default()
        };
        assert_eq!(check(since, true), Precondition::NotModified);
        let earlier = Conditions {
            if_modified_since: Some("Sun, 06 Nov 1994 08:49:36 GMT"),
            ..Default::default()
        };
        assert_eq!(check(earlier, true), Precondition::Serve);
        let if_match = Conditions {
            if_match: Some("\"0-0\""),
            ..Default::default()
        };
        assert_eq!(check(if_match, true), Precondition::Failed);
        assert_eq!(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), None);
    }

    #[test]
    fn content_types() {
        let types = MimeTypes::from_mime_types("text/markdown md markdown\nfont/woff2 woff2\n");
        assert_eq!(types.by_name("a.CSS"), Some("text/css; charset=utf-8"));
        assert_eq!(types.by_name("x.md"), Some("text/markdown; charset=utf-8"));
        assert_eq!(types.by_name("f.woff2"), Some("font/woff2"));
        assert_eq!(types.by_name("noext"), None);
        assert_eq!(sniff(b"hello\n"), "text/plain; charset=utf-8");
        assert_eq!(sniff(&[0, 1, 2]), "application/octet-stream");
    }
}
