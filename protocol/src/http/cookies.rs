//! Cookie header parsing (spec http §1.6) into a jar reused from request to request.
//!
//! Work is linear in the header bytes: each cookie is split and decoded once, and a repeated
//! name is found by a short linear search while the jar is small and by a hash index past
//! [`LINEAR_SEARCH_MAX`] cookies (a 1 MiB `Cookie` header holds over 100,000 of them: a linear
//! search each would be quadratic and hold the shard for seconds).

use super::percent_decode_into;
use std::collections::HashMap;
use std::ops::Range;

/// Cookies a jar searches one by one for a repeated name; past this it keeps a hash index.
const LINEAR_SEARCH_MAX: usize = 16;

/// Index entries a jar keeps the room for between requests; a larger index (a huge header)
/// is given back.
const RETAINED_INDEX_MAX: usize = 1024;

/// The cookies of one request: decoded text back to back and (name, value) ranges into it.
/// `parse` clears and refills it; once warm it allocates nothing for a request of at most
/// 16 cookies.
#[derive(Debug, Default, Clone)]
pub struct CookieJar {
    /// Names and decoded values back to back, each range checked UTF-8 when added.
    text: Vec<u8>,
    pairs: Vec<(Range<usize>, Range<usize>)>,
    /// Name → index in `pairs`, kept only past [`LINEAR_SEARCH_MAX`] cookies.
    index: HashMap<String, usize>,
}

impl CookieJar {
    /// Parses every `Cookie` header value: values are query-unescaped (`%20` and `+` become
    /// spaces), a value that fails to unescape drops its cookie, surrounding double quotes are
    /// removed, and for a repeated name the last one wins.
    pub fn parse<'h>(&mut self, headers: impl IntoIterator<Item = &'h [u8]>) {
        self.text.clear();
        self.pairs.clear();
        if self.index.capacity() > RETAINED_INDEX_MAX {
            self.index = HashMap::new();
        }
        self.index.clear();
        for header in headers {
            for part in header.split(|&byte| byte == b';') {
                let part = part.trim_ascii();
                let Some(equals) = part.iter().position(|&byte| byte == b'=') else {
                    continue;
                };
                let (name, value) = (&part[..equals], &part[equals + 1..]);
                if name.is_empty() || !name.iter().all(|&byte| super::is_token_byte(byte)) {
                    continue;
                }
                let value = value
                    .strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(value);
                let Ok(name) = std::str::from_utf8(name) else {
                    continue;
                };
                let value_start = self.text.len();
                if !percent_decode_into(value, true, &mut self.text) {
                    continue;
                }
                let value_range = value_start..self.text.len();
                match self.position(name) {
                    Some(known) => self.pairs[known].1 = value_range,
                    None => self.push_new(name, value_range),
                }
            }
        }
    }

    /// Where the cookie `name` is in `pairs`: a linear search while they are few, the index
    /// past that.
    fn position(&self, name: &str) -> Option<usize> {
        if self.pairs.len() <= LINEAR_SEARCH_MAX {
            return self
                .pairs
                .iter()
                .position(|(known, _)| &self.text[known.clone()] == name.as_bytes());
        }
        self.index.get(name).copied()
    }

    /// Adds a cookie not seen before; builds the index when the jar outgrows a linear search.
    fn push_new(&mut self, name: &str, value: Range<usize>) {
        let name_start = self.text.len();
        self.text.extend_from_slice(name.as_bytes());
        self.pairs.push((name_start..self.text.len(), value));
        let count = self.pairs.len();
        if count == LINEAR_SEARCH_MAX + 1 {
            for (at, (known, _)) in self.pairs.iter().enumerate() {
                self.index.insert(self.slice(known.clone()).to_owned(), at);
            }
        } else if count > LINEAR_SEARCH_MAX + 1 {
            self.index.insert(name.to_owned(), count - 1);
        }
    }

    /// (name, value) pairs in first-seen order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.pairs
            .iter()
            .map(|(name, value)| (self.slice(name.clone()), self.slice(value.clone())))
    }

    /// The text of a name or value range (each was checked to be UTF-8 when added; the
    /// empty string stands in should that ever not hold, rather than a panic).
    fn slice(&self, range: Range<usize>) -> &str {
        std::str::from_utf8(&self.text[range]).unwrap_or_default()
    }

    /// True when the request had no (valid) cookie.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_unescaped_and_the_last_duplicate_wins() {
        let mut jar = CookieJar::default();
        jar.parse([
            b"sid=ab%20c; theme=dark".as_slice(),
            b"theme=light; bad=%zz; q=\"x+y\"",
        ]);
        assert_eq!(
            jar.iter().collect::<Vec<_>>(),
            vec![("sid", "ab c"), ("theme", "light"), ("q", "x y")]
        );
        jar.parse([b"a=1".as_slice()]);
        assert_eq!(jar.iter().collect::<Vec<_>>(), vec![("a", "1")]);
        jar.parse([]);
        assert!(jar.is_empty());
    }

    #[test]
    fn many_cookies_keep_the_last_duplicate_and_cost_linear_time() {
        // 120,000 distinct names then every one again: a linear search per cookie took
        // minutes; the index keeps it to milliseconds.
        let mut header = String::new();
        for round in 0..2 {
            for i in 0..120_000 {
                header.push_str(&format!("c{i}={round}; "));
            }
        }
        let mut jar = CookieJar::default();
        let started = std::time::Instant::now();
        jar.parse([header.as_bytes()]);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let cookies: Vec<_> = jar.iter().collect();
        assert_eq!(cookies.len(), 120_000);
        assert_eq!(cookies[0], ("c0", "1"));
        assert_eq!(cookies[119_999], ("c119999", "1"));
        // The jar is reused: a small request after a huge one starts from an empty index.
        jar.parse([b"a=1; a=2".as_slice()]);
        assert_eq!(jar.iter().collect::<Vec<_>>(), vec![("a", "2")]);
    }

    proptest::proptest! {
        #[test]
        fn the_jar_matches_a_last_wins_model(names in proptest::collection::vec(0u8..40, 0..80)) {
            let header: String = names
                .iter()
                .enumerate()
                .map(|(at, name)| format!("n{name}={at}; "))
                .collect();
            let mut model: Vec<(String, String)> = Vec::new();
            for (at, name) in names.iter().enumerate() {
                let name = format!("n{name}");
                match model.iter_mut().find(|(known, _)| *known == name) {
                    Some((_, value)) => *value = at.to_string(),
                    None => model.push((name, at.to_string())),
                }
            }
            let mut jar = CookieJar::default();
            jar.parse([header.as_bytes()]);
            let got: Vec<(String, String)> =
                jar.iter().map(|(n, v)| (n.to_owned(), v.to_owned())).collect();
            proptest::prop_assert_eq!(got, model);
        }
    }
}
