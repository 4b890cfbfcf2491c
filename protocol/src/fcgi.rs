//! FastCGI 1.0 records for the responder role, sans I/O: records parsed from a buffer, the
//! name-value pairs of a PARAMS stream, records written for STDOUT and END_REQUEST. Every
//! length comes from the peer and is checked against what is there: a short or broken
//! record is an error, never a panic or an unbounded wait.
//!
//! Work: a record's header is read once when whole (an incomplete record costs a length
//! check per read, not a re-parse), and a PARAMS stream's pairs in one pass; constant work
//! per byte.

/// A record header's size.
pub const HEADER_BYTES: usize = 8;
/// The most content one record carries.
pub const MAX_CONTENT: usize = 0xffff;

/// `FCGI_BEGIN_REQUEST`.
pub const BEGIN_REQUEST: u8 = 1;
/// `FCGI_ABORT_REQUEST`.
pub const ABORT_REQUEST: u8 = 2;
/// `FCGI_END_REQUEST`.
pub const END_REQUEST: u8 = 3;
/// `FCGI_PARAMS`.
pub const PARAMS: u8 = 4;
/// `FCGI_STDIN`.
pub const STDIN: u8 = 5;
/// `FCGI_STDOUT`.
pub const STDOUT: u8 = 6;
/// `FCGI_GET_VALUES`.
pub const GET_VALUES: u8 = 9;
/// `FCGI_GET_VALUES_RESULT`.
pub const GET_VALUES_RESULT: u8 = 10;
/// `FCGI_UNKNOWN_TYPE`.
pub const UNKNOWN_TYPE: u8 = 11;

/// `FCGI_RESPONDER`.
pub const RESPONDER: u16 = 1;
/// `FCGI_REQUEST_COMPLETE`.
pub const REQUEST_COMPLETE: u8 = 0;
/// `FCGI_CANT_MPX_CONN`.
pub const CANT_MPX_CONN: u8 = 1;
/// `FCGI_UNKNOWN_ROLE`.
pub const UNKNOWN_ROLE: u8 = 3;

/// One record, borrowing its content from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Its type.
    pub kind: u8,
    /// The request it belongs to (0: the connection's management records).
    pub request_id: u16,
    /// Its content, without padding.
    pub content: &'a [u8],
}

/// Why input is not FastCGI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FcgiError {
    /// A version other than 1.
    #[error("FastCGI version {0} (1 expected)")]
    Version(u8),
    /// A name-value pair whose lengths run past its record stream.
    #[error("a FastCGI name-value pair runs past its stream")]
    Params,
    /// A BEGIN_REQUEST body shorter than 8 bytes.
    #[error("a FastCGI BEGIN_REQUEST body of {0} bytes (8 expected)")]
    BeginRequest(usize),
}

/// The record at the start of `input` and the bytes it spans (padding included); None
/// while it is incomplete.
///
/// # Errors
/// A version other than 1.
pub fn parse_record(input: &[u8]) -> Result<Option<(Record<'_>, usize)>, FcgiError> {
    let Some(header) = input.get(..HEADER_BYTES) else {
        return Ok(None);
    };
    if header[0] != 1 {
        return Err(FcgiError::Version(header[0]));
    }
    let content_len = usize::from(u16::from_be_bytes([header[4], header[5]]));
    let total = HEADER_BYTES + content_len + usize::from(header[6]);
    let Some(content) = input.get(HEADER_BYTES..HEADER_BYTES + content_len) else {
        return Ok(None);
    };
    if input.len() < total {
        return Ok(None);
    }
    Ok(Some((
        Record {
            kind: header[1],
            request_id: u16::from_be_bytes([header[2], header[3]]),
            content,
        },
        total,
    )))
}

/// A BEGIN_REQUEST body: the role and whether the connection stays open after the request
/// (`FCGI_KEEP_CONN`).
///
/// # Errors
/// A body shorter than 8 bytes.
pub fn parse_begin_request(content: &[u8]) -> Result<(u16, bool), FcgiError> {
    match content {
        [role_high, role_low, flags, _, _, _, _, _, ..] => {
            Ok((u16::from_be_bytes([*role_high, *role_low]), flags & 1 == 1))
        }
        _ => Err(FcgiError::BeginRequest(content.len())),
    }
}

/// A name-value pair of a PARAMS stream.
pub type Param<'a> = (&'a [u8], &'a [u8]);

/// The name-value pairs of a whole PARAMS stream (its records' contents joined).
///
/// # Errors
/// A length that runs past the stream.
pub fn parse_params(stream: &[u8]) -> Result<Vec<Param<'_>>, FcgiError> {
    let mut pairs = Vec::new();
    let mut rest = stream;
    while !rest.is_empty() {
        let (name_len, after) = pair_length(rest)?;
        let (value_len, after) = pair_length(after)?;
        let name = after.get(..name_len).ok_or(FcgiError::Params)?;
        let value = after
            .get(name_len..name_len.checked_add(value_len).ok_or(FcgiError::Params)?)
            .ok_or(FcgiError::Params)?;
        pairs.push((name, value));
        rest = &after[name_len + value_len..];
    }
    Ok(pairs)
}

/// One length of a name-value pair: a byte under 128, else four bytes with the top bit set.
fn pair_length(input: &[u8]) -> Result<(usize, &[u8]), FcgiError> {
    match input {
        [short, rest @ ..] if short & 0x80 == 0 => Ok((usize::from(*short), rest)),
        [a, b, c, d, rest @ ..] => {
            let long = u32::from_be_bytes([a & 0x7f, *b, *c, *d]);
            Ok((usize::try_from(long).map_err(|_| FcgiError::Params)?, rest))
        }
        _ => Err(FcgiError::Params),
    }
}

/// Appends `content` as records of `kind` for `request_id` (as many as it takes, each
/// padded to a multiple of 8); empty content makes one empty record (a stream's end).
pub fn write_records(out: &mut Vec<u8>, kind: u8, request_id: u16, content: &[u8]) {
    let mut chunks = content.chunks(MAX_CONTENT).peekable();
    if chunks.peek().is_none() {
        write_one(out, kind, request_id, &[]);
    }
    for chunk in chunks {
        write_one(out, kind, request_id, chunk);
    }
}

fn write_one(out: &mut Vec<u8>, kind: u8, request_id: u16, content: &[u8]) {
    let padding = (8 - content.len() % 8) % 8;
    let [id_high, id_low] = request_id.to_be_bytes();
    let [len_high, len_low] = u16::try_from(content.len())
        .unwrap_or(u16::MAX)
        .to_be_bytes();
    out.extend_from_slice(&[
        1,
        kind,
        id_high,
        id_low,
        len_high,
        len_low,
        u8::try_from(padding).unwrap_or(0),
        0,
    ]);
    out.extend_from_slice(content);
    out.resize(out.len() + padding, 0);
}

/// Appends `content` as STDOUT records, nothing when it is empty (an empty record would
/// end the stream).
pub fn write_stdout(out: &mut Vec<u8>, request_id: u16, content: &[u8]) {
    if !content.is_empty() {
        write_records(out, STDOUT, request_id, content);
    }
}

/// Appends an END_REQUEST record.
pub fn write_end_request(out: &mut Vec<u8>, request_id: u16, app_status: u32, protocol_status: u8) {
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&app_status.to_be_bytes());
    body[4] = protocol_status;
    write_one(out, END_REQUEST, request_id, &body);
}

/// Appends a name-value pair (the answer to GET_VALUES).
pub fn write_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        if len < 0x80 {
            out.push(u8::try_from(len).unwrap_or(0));
        } else {
            let long = u32::try_from(len).unwrap_or(u32::MAX >> 1) | 0x8000_0000;
            out.extend_from_slice(&long.to_be_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// An HTTP/1.1 answer's head rewritten as a CGI head (`Status: <code> <reason>` and the
/// headers, without the hop-by-hop ones) for the front server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgiHead {
    /// The CGI head, blank line included.
    pub bytes: Vec<u8>,
    /// Bytes of input the HTTP head spanned.
    pub consumed: usize,
    /// The body that follows is chunked (to be decoded before it goes out).
    pub chunked: bool,
}

/// The CGI head for the HTTP answer at the start of `input`; None while it is incomplete.
///
/// # Errors
/// Input that is not an HTTP/1.x answer head.
pub fn cgi_head(input: &[u8]) -> Result<Option<CgiHead>, httparse::Error> {
    let mut headers = [httparse::EMPTY_HEADER; 128];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(consumed) = response.parse(input)? else {
        return Ok(None);
    };
    let mut bytes = format!(
        "Status: {} {}\r\n",
        response.code.unwrap_or(500),
        response.reason.unwrap_or("")
    )
    .into_bytes();
    let mut chunked = false;
    for header in response.headers.iter() {
        let name = header.name;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked |= header.value.eq_ignore_ascii_case(b"chunked");
            continue;
        }
        if name.eq_ignore_ascii_case("connection") || name.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        bytes.extend_from_slice(name.as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(header.value);
        bytes.extend_from_slice(b"\r\n");
    }
    bytes.extend_from_slice(b"\r\n");
    Ok(Some(CgiHead {
        bytes,
        consumed,
        chunked,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn records_round_trip_with_padding_and_split_content() {
        let mut out = Vec::new();
        write_records(&mut out, STDOUT, 7, &vec![b'x'; MAX_CONTENT + 10]);
        let (first, used) = parse_record(&out).unwrap().unwrap();
        assert_eq!(
            (first.kind, first.request_id, first.content.len()),
            (STDOUT, 7, MAX_CONTENT)
        );
        let (second, rest) = parse_record(&out[used..]).unwrap().unwrap();
        assert_eq!(second.content.len(), 10);
        assert_eq!(used + rest, out.len());
        assert_eq!(out.len() % 8, 0);
        assert_eq!(parse_record(&out[..used - 1]), Ok(None), "incomplete");
        assert_eq!(
            parse_record(&[2, 1, 0, 1, 0, 0, 0, 0]),
            Err(FcgiError::Version(2))
        );
    }

    #[test]
    fn params_read_short_and_long_lengths() {
        let mut stream = Vec::new();
        write_pair(&mut stream, b"REQUEST_METHOD", b"GET");
        let long = vec![b'v'; 300];
        write_pair(&mut stream, b"HTTP_X_LONG", &long);
        let pairs = parse_params(&stream).unwrap();
        assert_eq!(pairs[0], (&b"REQUEST_METHOD"[..], &b"GET"[..]));
        assert_eq!(pairs[1].1.len(), 300);
        assert_eq!(
            parse_params(&stream[..stream.len() - 1]),
            Err(FcgiError::Params)
        );
        assert_eq!(parse_params(&[0x80, 0, 0]), Err(FcgiError::Params));
        assert_eq!(
            parse_begin_request(&[0, 1, 1, 0, 0, 0, 0, 0]),
            Ok((RESPONDER, true))
        );
        assert!(parse_begin_request(&[0, 1]).is_err());
    }

    #[test]
    fn an_http_answer_becomes_a_cgi_head() {
        let answer = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\n";
        let head = cgi_head(answer).unwrap().unwrap();
        assert_eq!(
            head.bytes,
            b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\n"
        );
        assert!(head.chunked);
        assert_eq!(&answer[head.consumed..], b"5\r\n");
        assert_eq!(cgi_head(b"HTTP/1.1 200 OK\r\n"), Ok(None));
        assert!(cgi_head(b"garbage\r\n\r\n").is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_parse_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_record(&bytes);
            let _ = parse_params(&bytes);
            let _ = parse_begin_request(&bytes);
            let _ = cgi_head(&bytes);
        }
    }
}
