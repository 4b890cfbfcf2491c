//! Cookie header parsing (spec http §1.6).

use super::percent_decode;

/// Parses every `Cookie` header value into (name, value) pairs: values are query-unescaped
/// (`%20` and `+` become spaces), a value that fails to unescape drops its cookie, surrounding
/// double quotes are removed, and for a repeated name the last one wins.
#[must_use]
pub fn parse_cookies<'a>(headers: impl IntoIterator<Item = &'a [u8]>) -> Vec<(String, String)> {
    let mut cookies: Vec<(String, String)> = Vec::new();
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
            let (Ok(name), Some(value)) = (std::str::from_utf8(name), percent_decode(value, true))
            else {
                continue;
            };
            match cookies.iter_mut().find(|(known, _)| known == name) {
                Some(entry) => entry.1 = value,
                None => cookies.push((name.to_owned(), value)),
            }
        }
    }
    cookies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_unescaped_and_the_last_duplicate_wins() {
        let cookies = parse_cookies([
            b"sid=ab%20c; theme=dark".as_slice(),
            b"theme=light; bad=%zz; q=\"x+y\"",
        ]);
        assert_eq!(
            cookies,
            vec![
                ("sid".into(), "ab c".into()),
                ("theme".into(), "light".into()),
                ("q".into(), "x y".into()),
            ]
        );
    }
}
