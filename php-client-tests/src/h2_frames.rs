//! A raw HTTP/2 client for the tests that must send what no well-behaved client sends
//! (streams reset at once, more streams than allowed, floods of PING, SETTINGS,
//! CONTINUATION): frames written byte by byte (RFC 9113 §4), header blocks as HPACK
//! literals without indexing (RFC 7541 §6.2.2), frames read back whole.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Frame types.
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

/// Flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

/// Error codes.
pub const CANCEL: u32 = 0x8;
pub const REFUSED_STREAM: u32 = 0x7;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// SETTINGS_MAX_CONCURRENT_STREAMS.
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;

/// One frame read back.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    #[must_use]
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let bytes = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes(bytes.try_into().ok()?))
    }

    /// A setting's value in a SETTINGS frame.
    #[must_use]
    pub fn setting(&self, id: u16) -> Option<u32> {
        self.payload.chunks_exact(6).find_map(|entry| {
            (u16::from_be_bytes([entry[0], entry[1]]) == id)
                .then(|| u32::from_be_bytes([entry[2], entry[3], entry[4], entry[5]]))
        })
    }

    /// A HEADERS frame whose first field is `:status: 200` from the static table.
    #[must_use]
    pub fn is_status_200(&self) -> bool {
        self.kind == HEADERS && self.payload.first() == Some(&0x88)
    }
}

/// A client connection that has sent the preface and an empty SETTINGS.
#[derive(Debug)]
pub struct RawH2 {
    stream: TcpStream,
    input: Vec<u8>,
}

impl RawH2 {
    /// Connects to `address` (cleartext, prior knowledge).
    ///
    /// # Panics
    /// When the connection fails.
    #[must_use]
    pub fn connect(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).expect("connects");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut client = Self {
            stream,
            input: Vec::new(),
        };
        client
            .stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .unwrap();
        client.send(SETTINGS, 0, 0, &[]).unwrap();
        client
    }

    /// Writes one frame.
    ///
    /// # Errors
    /// The server closed.
    pub fn send(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) -> io::Result<()> {
        self.stream.write_all(&frame(kind, flags, stream, payload))
    }

    /// A second handle on the connection, for a thread that writes while this one reads.
    ///
    /// # Panics
    /// When the socket cannot be duplicated.
    #[must_use]
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("the socket duplicates")
    }

    /// Writes frames built into one buffer (a flood goes out in large writes).
    ///
    /// # Errors
    /// The server closed.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Opens stream `id` with `method` on `path` (END_STREAM when `end`).
    ///
    /// # Errors
    /// The server closed.
    pub fn request(&mut self, id: u32, method: &str, path: &str, end: bool) -> io::Result<()> {
        let block = header_block(&[
            (":method", method),
            (":scheme", "http"),
            (":path", path),
            (":authority", "localhost"),
        ]);
        let flags = END_HEADERS | if end { END_STREAM } else { 0 };
        self.send(HEADERS, flags, id, &block)
    }

    /// The next frame; None at the end of the connection or after the read timeout.
    pub fn read_frame(&mut self) -> Option<Frame> {
        loop {
            if self.input.len() >= 9 {
                let length = usize::from(self.input[0]) << 16
                    | usize::from(self.input[1]) << 8
                    | usize::from(self.input[2]);
                if self.input.len() >= 9 + length {
                    let frame = Frame {
                        kind: self.input[3],
                        flags: self.input[4],
                        stream: u32::from_be_bytes(self.input[5..9].try_into().unwrap())
                            & 0x7fff_ffff,
                        payload: self.input[9..9 + length].to_vec(),
                    };
                    self.input.drain(..9 + length);
                    return Some(frame);
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(count) => self.input.extend_from_slice(&chunk[..count]),
            }
        }
    }

    /// Frames until one matches `wanted` (ACKing the server's SETTINGS on the way); None
    /// when the connection ends first.
    pub fn read_until(&mut self, wanted: impl Fn(&Frame) -> bool) -> Option<Frame> {
        loop {
            let frame = self.read_frame()?;
            if frame.kind == SETTINGS && frame.flags & ACK == 0 {
                let _ = self.send(SETTINGS, ACK, 0, &[]);
            }
            if wanted(&frame) {
                return Some(frame);
            }
        }
    }

    /// Sets the read timeout.
    pub fn set_read_timeout(&self, timeout: Duration) {
        self.stream.set_read_timeout(Some(timeout)).unwrap();
    }
}

/// One frame's bytes.
#[must_use]
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = u32::try_from(payload.len()).expect("a frame fits");
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&length.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header block of literal fields without indexing, new names, no Huffman coding.
#[must_use]
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in fields {
        block.push(0x00);
        string(&mut block, name.as_bytes());
        string(&mut block, value.as_bytes());
    }
    block
}

/// An HPACK string literal: a 7-bit-prefix length, then the bytes.
fn string(out: &mut Vec<u8>, bytes: &[u8]) {
    let mut length = bytes.len();
    if length < 127 {
        out.push(u8::try_from(length).unwrap());
    } else {
        out.push(127);
        length -= 127;
        while length >= 128 {
            out.push(u8::try_from(length % 128).unwrap() | 0x80);
            length /= 128;
        }
        out.push(u8::try_from(length).unwrap());
    }
    out.extend_from_slice(bytes);
}
