//! The JSON response context (`{"status": 200, "headers": {"Name": ["v", …] | "v"}}`,
//! spec http §1.7), checked once and then walked in place like the protobuf one: no tree is
//! built, and a header whose name and values fit [`DECODE_STACK_BYTES`] is unescaped on the
//! stack, so a warm request allocates nothing for it. (PHP's `json_encode` escapes every
//! `/`, so most `Content-Type` values do carry escapes.)

/// What receives each header: its name and an iterator over its values.
pub(super) type HeaderVisitor<'f> = dyn FnMut(&[u8], &mut dyn Iterator<Item = &[u8]>) + 'f;

/// Nesting allowed inside a header value or an unknown member (deeper → an error).
const DEPTH_MAX: usize = 32;
/// Bytes of one header's unescaped name and values decoded on the stack.
const DECODE_STACK_BYTES: usize = 4096;
/// Values of one header decoded on the stack.
const DECODE_STACK_VALUES: usize = 64;

/// A JSON scanner over a context: positions only, nothing decoded.
#[derive(Clone, Copy)]
struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Scan<T> = Result<T, &'static str>;

impl<'a> Scanner<'a> {
    fn skip_ws(&mut self) {
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.bytes.get(self.at).copied()
    }

    fn expect(&mut self, byte: u8) -> Scan<()> {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err("malformed JSON")
        }
    }

    /// A string's raw contents (between the quotes, escapes undecoded), checked.
    fn string(&mut self) -> Scan<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.at;
        loop {
            match self.bytes.get(self.at) {
                None => return Err("unterminated JSON string"),
                Some(b'"') => break,
                Some(b'\\') => {
                    match self.bytes.get(self.at + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                        Some(b'u')
                            if self
                                .bytes
                                .get(self.at + 2..self.at + 6)
                                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) =>
                        {
                            self.at += 4;
                        }
                        _ => return Err("bad escape in a JSON string"),
                    }
                    self.at += 2;
                }
                Some(&byte) if byte < 0x20 => return Err("control character in a JSON string"),
                Some(_) => self.at += 1,
            }
        }
        let raw = &self.bytes[start..self.at];
        self.at += 1;
        std::str::from_utf8(raw).map_err(|_| "JSON string is not UTF-8")?;
        Ok(raw)
    }

    /// A number, `true`, `false` or `null`: its text.
    fn scalar(&mut self) -> Scan<&'a [u8]> {
        self.skip_ws();
        let start = self.at;
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'+' | b'.'))
        {
            self.at += 1;
        }
        let text = &self.bytes[start..self.at];
        let number = text
            .first()
            .is_some_and(|b| *b == b'-' || b.is_ascii_digit())
            && std::str::from_utf8(text).is_ok_and(|t| t.parse::<f64>().is_ok());
        if number || matches!(text, b"true" | b"false" | b"null") {
            Ok(text)
        } else {
            Err("malformed JSON value")
        }
    }

    /// Any value; returns its raw text (a string's with its quotes).
    fn value(&mut self, depth: usize) -> Scan<&'a [u8]> {
        if depth > DEPTH_MAX {
            return Err("JSON nested too deeply");
        }
        let start = {
            self.skip_ws();
            self.at
        };
        match self.peek() {
            Some(b'"') => {
                self.string()?;
            }
            Some(b'{') => {
                self.at += 1;
                if self.peek() == Some(b'}') {
                    self.at += 1;
                } else {
                    loop {
                        self.string()?;
                        self.expect(b':')?;
                        self.value(depth + 1)?;
                        if self.peek() == Some(b',') {
                            self.at += 1;
                        } else {
                            self.expect(b'}')?;
                            break;
                        }
                    }
                }
            }
            Some(b'[') => {
                self.at += 1;
                if self.peek() == Some(b']') {
                    self.at += 1;
                } else {
                    loop {
                        self.value(depth + 1)?;
                        if self.peek() == Some(b',') {
                            self.at += 1;
                        } else {
                            self.expect(b']')?;
                            break;
                        }
                    }
                }
            }
            _ => {
                self.scalar()?;
            }
        }
        Ok(&self.bytes[start..self.at])
    }

    /// Calls `member(key_raw, scanner_at_value)` for each member of the object here; the
    /// callback must consume the value.
    fn members(&mut self, mut member: impl FnMut(&'a [u8], &mut Self) -> Scan<()>) -> Scan<()> {
        self.expect(b'{')?;
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Ok(());
        }
        loop {
            let key = self.string()?;
            self.expect(b':')?;
            member(key, self)?;
            if self.peek() == Some(b',') {
                self.at += 1;
            } else {
                return self.expect(b'}');
            }
        }
    }
}

/// Checks a whole JSON response context and returns its status. The headers member may be
/// an object, or an empty list (PHP encodes an empty array so).
pub(super) fn validate(context: &[u8]) -> Result<i64, &'static str> {
    let mut scanner = Scanner {
        bytes: context,
        at: 0,
    };
    let mut status = 0;
    scanner.members(|key, scanner| {
        match key {
            b"status" => {
                let text = scanner.scalar()?;
                status = std::str::from_utf8(text)
                    .ok()
                    .and_then(|t| t.parse::<i64>().ok())
                    .ok_or("status is not an integer")?;
            }
            b"headers" => match scanner.peek() {
                Some(b'{') => {
                    scanner.members(|_, scanner| scanner.value(1).map(drop))?;
                }
                Some(b'[' | b'n') => {
                    let text = scanner.value(1)?;
                    let empty_list =
                        text.starts_with(b"[") && text.iter().all(|b| b" \t\r\n[]".contains(b));
                    if text != b"null" && !empty_list {
                        return Err("headers is neither an object nor an empty list");
                    }
                }
                _ => return Err("headers is not an object"),
            },
            _ => {
                scanner.value(1)?;
            }
        }
        Ok(())
    })?;
    if scanner.peek().is_some() {
        return Err("trailing bytes after the JSON object");
    }
    Ok(status)
}

/// Unescapes a checked string's raw contents onto `out`.
fn unescape(raw: &[u8], out: &mut impl Extend<u8>) {
    let mut at = 0;
    while at < raw.len() {
        let byte = raw[at];
        if byte != b'\\' {
            let end = raw[at..]
                .iter()
                .position(|b| *b == b'\\')
                .map_or(raw.len(), |p| at + p);
            out.extend(raw[at..end].iter().copied());
            at = end;
            continue;
        }
        let (decoded, used) = match raw[at + 1] {
            b'b' => ('\u{8}', 2),
            b'f' => ('\u{c}', 2),
            b'n' => ('\n', 2),
            b'r' => ('\r', 2),
            b't' => ('\t', 2),
            b'u' => unicode_escape(raw, at),
            other => (char::from(other), 2),
        };
        let mut utf8 = [0u8; 4];
        out.extend(decoded.encode_utf8(&mut utf8).bytes());
        at += used;
    }
}

/// `\uXXXX`, with a surrogate pair when one follows; a lone surrogate becomes U+FFFD.
fn unicode_escape(raw: &[u8], at: usize) -> (char, usize) {
    let hex = |from: usize| {
        raw.get(from..from + 4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u32::from_str_radix(h, 16).ok())
    };
    let Some(first) = hex(at + 2) else {
        return ('\u{fffd}', 2);
    };
    if (0xd800..0xdc00).contains(&first) && raw.get(at + 6..at + 8) == Some(b"\\u") {
        if let Some(second) = hex(at + 8).filter(|s| (0xdc00..0xe000).contains(s)) {
            let code = 0x10000 + ((first - 0xd800) << 10) + (second - 0xdc00);
            return (char::from_u32(code).unwrap_or('\u{fffd}'), 12);
        }
    }
    (char::from_u32(first).unwrap_or('\u{fffd}'), 6)
}

/// Fixed-size output for [`unescape`]: past its room it records the overflow.
struct StackBytes<'b> {
    room: &'b mut [u8],
    len: usize,
    overflowed: bool,
}

impl Extend<u8> for StackBytes<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, bytes: I) {
        for byte in bytes {
            match self.room.get_mut(self.len) {
                Some(slot) => {
                    *slot = byte;
                    self.len += 1;
                }
                None => self.overflowed = true,
            }
        }
    }
}

/// Calls `f(name, values)` for each header of a context [`validate`] accepted. A value that
/// is not a string is given as its JSON text (`1`, `true`).
pub(super) fn for_each_header(context: &[u8], f: &mut HeaderVisitor<'_>) {
    let mut scanner = Scanner {
        bytes: context,
        at: 0,
    };
    let _ = scanner.members(|key, scanner| {
        if key != b"headers" || scanner.peek() != Some(b'{') {
            return scanner.value(1).map(drop);
        }
        scanner.members(|name, scanner| {
            // Raw values on the stack; past its room, all of this header's go to the heap.
            let mut values: [&[u8]; DECODE_STACK_VALUES] = [b""; DECODE_STACK_VALUES];
            let mut spilled: Vec<&[u8]> = Vec::new();
            let mut count = 0;
            let mut push = |value| {
                if count < DECODE_STACK_VALUES {
                    values[count] = value;
                } else {
                    if spilled.is_empty() {
                        spilled.extend_from_slice(&values);
                    }
                    spilled.push(value);
                }
                count += 1;
            };
            if scanner.peek() == Some(b'[') {
                scanner.at += 1;
                while scanner.peek() != Some(b']') {
                    push(scanner.value(1)?);
                    if scanner.peek() == Some(b',') {
                        scanner.at += 1;
                    }
                }
                scanner.at += 1;
            } else {
                push(scanner.value(1)?);
            }
            if spilled.is_empty() {
                emit_on_stack(name, &values[..count], f);
            } else {
                emit_on_heap(name, spilled, f);
            }
            Ok(())
        })
    });
}

/// A raw value's text: a string unescaped, anything else as written.
fn decode_value(raw: &[u8], out: &mut impl Extend<u8>) {
    match raw.strip_prefix(b"\"").and_then(|r| r.strip_suffix(b"\"")) {
        Some(inner) => unescape(inner, out),
        None => out.extend(raw.iter().copied()),
    }
}

fn emit_on_stack(name: &[u8], values: &[&[u8]], f: &mut HeaderVisitor<'_>) {
    let mut room = [0u8; DECODE_STACK_BYTES];
    let mut ends = [0usize; DECODE_STACK_VALUES + 1];
    let mut bytes = StackBytes {
        room: &mut room,
        len: 0,
        overflowed: false,
    };
    unescape(name, &mut bytes);
    ends[0] = bytes.len;
    for (index, value) in values.iter().enumerate() {
        decode_value(value, &mut bytes);
        ends[index + 1] = bytes.len;
    }
    if bytes.overflowed {
        emit_on_heap(name, values.to_vec(), f);
        return;
    }
    let decoded = &room[..ends[values.len()]];
    let mut items = ends
        .windows(2)
        .take(values.len())
        .map(|w| &decoded[w[0]..w[1]]);
    f(&decoded[..ends[0]], &mut items);
}

fn emit_on_heap(name: &[u8], values: Vec<&[u8]>, f: &mut HeaderVisitor<'_>) {
    let mut decoded_name = Vec::new();
    unescape(name, &mut decoded_name);
    let decoded: Vec<Vec<u8>> = values
        .iter()
        .map(|value| {
            let mut out = Vec::new();
            decode_value(value, &mut out);
            out
        })
        .collect();
    f(&decoded_name, &mut decoded.iter().map(Vec::as_slice));
}
