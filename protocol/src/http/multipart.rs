//! `multipart/form-data` bodies (RFC 7578), split into parts without copying their contents,
//! with the rules Go's `mime/multipart` applies for rr (spec http §2.3): the preamble and
//! epilogue are ignored, delimiter lines may carry trailing blanks, a body whose first
//! delimiter ends in a bare LF uses bare LF throughout, a part without a `form-data` name is
//! skipped, a file name is reduced to its last path element, at most [`MAX_PARTS`] parts.
//!
//! Work: one pass over the body; each candidate delimiter (a line end) is compared with the
//! delimiter, at most 74 bytes, so the worst case (a body of line ends) is 74 comparisons a
//! byte. A part has at most 100 header lines, each looked up by a scan of those.

use super::percent_decode;

/// Most parts a body may have (Go's default `multipartmaxparts`).
pub const MAX_PARTS: usize = 1000;

/// Most header lines a part may have.
const MAX_PART_HEADERS: usize = 100;

/// A body that is not a well-formed multipart form (rr answers 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    /// The `Content-Type` has no `boundary` parameter.
    #[error("no multipart boundary param in Content-Type")]
    NoBoundary,
    /// The body ends before the closing delimiter.
    #[error("multipart: NextPart: EOF")]
    UnexpectedEnd,
    /// A part's header block is malformed.
    #[error("multipart: malformed MIME header line")]
    BadHeader,
    /// More than [`MAX_PARTS`] parts, or a part with too many header lines.
    #[error("multipart: message too large")]
    TooLarge,
}

/// One named part of the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The `name` parameter of `Content-Disposition`.
    pub name: String,
    /// The file name (last path element) when the part is a file.
    pub filename: Option<String>,
    /// The part's `Content-Type`, "" when absent.
    pub content_type: String,
    /// The part's contents, a slice of the body.
    pub data: &'a [u8],
}

/// The `boundary` parameter of a `multipart/form-data` content type, unquoted.
#[must_use]
pub fn boundary(content_type: &[u8]) -> Option<&[u8]> {
    let mut params = content_type.split(|&byte| byte == b';').skip(1);
    params.find_map(|param| {
        let param = param.trim_ascii();
        let equals = param.iter().position(|&byte| byte == b'=')?;
        if !param[..equals]
            .trim_ascii()
            .eq_ignore_ascii_case(b"boundary")
        {
            return None;
        }
        let value = param[equals + 1..].trim_ascii();
        let value = match value {
            [b'"', inner @ .., b'"'] => inner,
            _ => value,
        };
        // RFC 2046: 1 to 70 characters.
        (!value.is_empty() && value.len() <= 70).then_some(value)
    })
}

/// Splits `body` into its named parts, in order.
///
/// # Errors
/// A missing closing delimiter, a malformed part header, too many parts.
pub fn parse<'a>(body: &'a [u8], boundary: &[u8]) -> Result<Vec<Part<'a>>, MultipartError> {
    let mut dash_boundary = Vec::with_capacity(boundary.len() + 2);
    dash_boundary.extend_from_slice(b"--");
    dash_boundary.extend_from_slice(boundary);
    // The first delimiter may open the body or follow a preamble line.
    let mut at = if body.starts_with(&dash_boundary) {
        0
    } else {
        let mut needle = b"\n".to_vec();
        needle.extend_from_slice(&dash_boundary);
        find(body, &needle, 0).ok_or(MultipartError::UnexpectedEnd)? + 1
    };
    at += dash_boundary.len();
    let (line_end, newline): (usize, &[u8]) = match delimiter_tail(body, at)? {
        Tail::Close => return Ok(Vec::new()),
        Tail::Line { end, crlf } => (end, if crlf { b"\r\n" } else { b"\n" }),
    };
    let mut delimiter = newline.to_vec();
    delimiter.extend_from_slice(&dash_boundary);
    at = line_end;
    let mut parts = Vec::new();
    loop {
        let (headers, content_start) = part_headers(body, at, newline)?;
        let content_end =
            find_delimiter(body, &delimiter, content_start).ok_or(MultipartError::UnexpectedEnd)?;
        if let Some((name, filename)) = disposition(&headers) {
            if parts.len() == MAX_PARTS {
                return Err(MultipartError::TooLarge);
            }
            parts.push(Part {
                name,
                filename,
                content_type: header(&headers, "content-type").unwrap_or_default(),
                data: &body[content_start..content_end],
            });
        }
        match delimiter_tail(body, content_end + delimiter.len())? {
            Tail::Close => return Ok(parts),
            Tail::Line { end, .. } => at = end,
        }
    }
}

/// What follows `--boundary`.
enum Tail {
    /// `--`: the last delimiter.
    Close,
    /// Blanks then a line end; the next part starts at `end`.
    Line { end: usize, crlf: bool },
}

fn delimiter_tail(body: &[u8], at: usize) -> Result<Tail, MultipartError> {
    let rest = body.get(at..).ok_or(MultipartError::UnexpectedEnd)?;
    if rest.starts_with(b"--") {
        return Ok(Tail::Close);
    }
    let blanks = rest
        .iter()
        .take_while(|&&byte| byte == b' ' || byte == b'\t')
        .count();
    match &rest[blanks..] {
        [b'\r', b'\n', ..] => Ok(Tail::Line {
            end: at + blanks + 2,
            crlf: true,
        }),
        [b'\n', ..] => Ok(Tail::Line {
            end: at + blanks + 1,
            crlf: false,
        }),
        // Text glued to the boundary is not a delimiter; Go reports it the same way.
        _ => Err(MultipartError::UnexpectedEnd),
    }
}

/// A part's header lines as (lower-cased name, value) and where its content starts.
fn part_headers(
    body: &[u8],
    mut at: usize,
    newline: &[u8],
) -> Result<(Vec<(String, String)>, usize), MultipartError> {
    let mut headers: Vec<(String, String)> = Vec::new();
    loop {
        let end = find(body, newline, at).ok_or(MultipartError::UnexpectedEnd)?;
        let line = &body[at..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        at = end + newline.len();
        if line.is_empty() {
            return Ok((headers, at));
        }
        if headers.len() == MAX_PART_HEADERS {
            return Err(MultipartError::TooLarge);
        }
        let text = String::from_utf8_lossy(line);
        if line[0] == b' ' || line[0] == b'\t' {
            // An obsolete folded continuation of the previous header.
            let (_, value) = headers.last_mut().ok_or(MultipartError::BadHeader)?;
            value.push(' ');
            value.push_str(text.trim());
            continue;
        }
        let colon = text.find(':').ok_or(MultipartError::BadHeader)?;
        let name = text[..colon].trim();
        if name.is_empty() || name.contains(' ') {
            return Err(MultipartError::BadHeader);
        }
        headers.push((
            name.to_ascii_lowercase(),
            text[colon + 1..].trim().to_owned(),
        ));
    }
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(known, _)| known == name)
        .map(|(_, value)| value.clone())
}

/// The form name and file name of a `Content-Disposition: form-data` part; `None` for a part
/// without one (Go's `FormName` is empty and the part is skipped).
fn disposition(headers: &[(String, String)]) -> Option<(String, Option<String>)> {
    let value = header(headers, "content-disposition")?;
    let mut params = split_params(&value)?;
    let kind = params.next()?;
    if !kind.0.eq_ignore_ascii_case("form-data") {
        return None;
    }
    let (mut name, mut filename, mut extended) = (None, None, None);
    for (key, value) in params {
        let slot = match key.to_ascii_lowercase().as_str() {
            "name" => &mut name,
            "filename" => &mut filename,
            "filename*" => &mut extended,
            _ => continue,
        };
        if slot.is_some() {
            // Go's mime.ParseMediaType refuses duplicate parameters.
            return None;
        }
        *slot = Some(value);
    }
    let filename = extended
        .and_then(|value| decode_extended(&value))
        .or(filename)
        .filter(|filename| !filename.is_empty())
        .map(|filename| last_path_element(&filename));
    Some((name.filter(|name| !name.is_empty())?, filename))
}

/// `form-data; name="a"; filename=b` → (`form-data`, ""), (`name`, `a`), (`filename`, `b`).
/// `None` when a quoted string is not closed.
fn split_params(text: &str) -> Option<std::vec::IntoIter<(String, String)>> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    let mut first = true;
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ';') {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ';' {
                break;
            }
            key.push(c);
            chars.next();
        }
        let key = key.trim().to_owned();
        let mut value = String::new();
        if !first && chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
                chars.next();
            }
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => value.push(chars.next()?),
                        c => value.push(c),
                    }
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ';' {
                        break;
                    }
                    value.push(c);
                    chars.next();
                }
                value = value.trim().to_owned();
            }
        }
        out.push((key, value));
        first = false;
    }
    Some(out.into_iter())
}

/// RFC 5987 `UTF-8''na%C3%AFve.txt` (UTF-8 and US-ASCII only, as Go).
fn decode_extended(value: &str) -> Option<String> {
    let mut pieces = value.splitn(3, '\'');
    let charset = pieces.next()?;
    let _language = pieces.next()?;
    let encoded = pieces.next()?;
    if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("us-ascii") {
        return None;
    }
    percent_decode(encoded.as_bytes(), false)
}

/// Go's `filepath.Base` on Unix: the last `/`-separated element, trailing slashes ignored.
fn last_path_element(name: &str) -> String {
    let trimmed = name.trim_end_matches('/');
    if trimmed.is_empty() {
        return "/".into();
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_owned()
}

/// The next delimiter: `\r\n--boundary` followed by blanks, a line end or `--`. The same
/// bytes followed by anything else are part contents, as Go reads them.
fn find_delimiter(body: &[u8], delimiter: &[u8], mut from: usize) -> Option<usize> {
    loop {
        let at = find(body, delimiter, from)?;
        match &body[at + delimiter.len()..] {
            [b' ' | b'\t' | b'\r' | b'\n', ..] | [b'-', b'-', ..] | [] => return Some(at),
            _ => from = at + 1,
        }
    }
}

/// The first `needle` in `hay` at or after `from`. The needle starts with a line end, which
/// is rare in file data, so scanning for its first byte keeps this linear in practice.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut at = from;
    while at + needle.len() <= hay.len() {
        let offset = hay[at..=hay.len() - needle.len()]
            .iter()
            .position(|&byte| byte == first)?;
        at += offset;
        if hay[at..].starts_with(needle) {
            return Some(at);
        }
        at += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"preamble\r\n--X\r\n\
        Content-Disposition: form-data; name=\"title\"\r\n\r\nHi\r\n\
        --X  \r\n\
        Content-Disposition: form-data; name=\"doc\"; filename=\"../../etc/r.PDF\"\r\n\
        Content-Type: application/pdf\r\n\r\n%PDF\r\n--Y\r\n--XY\r\n\
        --X\r\n\
        Content-Disposition: attachment; name=\"skipped\"\r\n\r\nno\r\n\
        --X\r\n\
        Content-Disposition: form-data; name=\"n\"; filename*=UTF-8''na%C3%AFve.txt; filename=\"x\"\r\n\r\n\r\n\
        --X--\r\nepilogue";

    #[test]
    fn parts_are_split_named_and_sliced() {
        let parts = parse(BODY, b"X").unwrap();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].name, "title");
        assert_eq!(parts[0].filename, None);
        assert_eq!(parts[0].data, b"Hi");
        assert_eq!(parts[1].filename.as_deref(), Some("r.PDF"));
        assert_eq!(parts[1].content_type, "application/pdf");
        assert_eq!(parts[1].data, b"%PDF\r\n--Y\r\n--XY");
        assert_eq!(parts[2].filename.as_deref(), Some("naïve.txt"));
        assert_eq!(parts[2].data, b"");
    }

    #[test]
    fn bare_line_feeds_are_accepted_when_the_body_uses_them() {
        let body = b"--b\nContent-Disposition: form-data; name=a\n\n1\n--b--";
        let parts = parse(body, b"b").unwrap();
        assert_eq!(parts[0].name, "a");
        assert_eq!(parts[0].data, b"1");
    }

    #[test]
    fn truncated_and_malformed_bodies_are_errors() {
        assert_eq!(parse(b"", b"X"), Err(MultipartError::UnexpectedEnd));
        let open = b"--X\r\nContent-Disposition: form-data; name=a\r\n\r\nvalue";
        assert_eq!(parse(open, b"X"), Err(MultipartError::UnexpectedEnd));
        let bad = b"--X\r\nno colon here\r\n\r\n1\r\n--X--";
        assert_eq!(parse(bad, b"X"), Err(MultipartError::BadHeader));
        assert_eq!(parse(b"--X--\r\n", b"X"), Ok(Vec::new()));
    }

    #[test]
    fn too_many_parts_is_an_error() {
        let mut body = Vec::new();
        for _ in 0..=MAX_PARTS {
            body.extend_from_slice(b"--X\r\nContent-Disposition: form-data; name=a\r\n\r\n1\r\n");
        }
        body.extend_from_slice(b"--X--");
        assert_eq!(parse(&body, b"X"), Err(MultipartError::TooLarge));
    }

    #[test]
    fn boundary_comes_from_the_content_type() {
        assert_eq!(
            boundary(b"multipart/form-data; boundary=abc"),
            Some(&b"abc"[..])
        );
        assert_eq!(
            boundary(b"multipart/form-data; charset=x; Boundary=\"a b\""),
            Some(&b"a b"[..])
        );
        assert_eq!(boundary(b"multipart/form-data"), None);
        assert_eq!(boundary(b"multipart/form-data; boundary="), None);
    }

    #[test]
    fn file_names_keep_only_the_last_path_element() {
        assert_eq!(last_path_element("a/b/c.txt"), "c.txt");
        assert_eq!(last_path_element("dir/"), "dir");
        assert_eq!(last_path_element(".."), "..");
        assert_eq!(last_path_element("/"), "/");
    }
}
