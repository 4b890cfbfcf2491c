//! Cookie header parsing (spec http §1.6) into a jar reused from request to request.

use super::percent_decode_into;
use std::ops::Range;

/// The cookies of one request: decoded text back to back and (name, value) ranges into it.
/// `parse` clears and refills it; once warm it allocates nothing.
#[derive(Debug, Default, Clone)]
pub struct CookieJar {
    text: String,
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

impl CookieJar {
    /// Parses every `Cookie` header value: values are query-unescaped (`%20` and `+` become
    /// spaces), a value that fails to unescape drops its cookie, surrounding double quotes are
    /// removed, and for a repeated name the last one wins.
    pub fn parse<'h>(&mut self, headers: impl IntoIterator<Item = &'h [u8]>) {
        self.text.clear();
        self.pairs.clear();
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
                let known = self
                    .pairs
                    .iter_mut()
                    .find(|(known, _)| &self.text[known.clone()] == name);
                match known {
                    Some((_, old_value)) => *old_value = value_range,
                    None => {
                        let name_start = self.text.len();
                        self.text.push_str(name);
                        self.pairs.push((name_start..self.text.len(), value_range));
                    }
                }
            }
        }
    }

    /// (name, value) pairs in first-seen order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.pairs
            .iter()
            .map(|(name, value)| (&self.text[name.clone()], &self.text[value.clone()]))
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
}
