//! A small HTTP/1.x client over a plain socket, so tests control every byte on the wire
//! (pipelining, bad requests, half-sent bodies) and see every byte of the answer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// One response as read off the wire.
#[derive(Debug, Clone, Default)]
pub struct Response {
    /// Final status.
    pub status: u16,
    /// Interim (1xx) statuses before it, with their headers.
    pub interim: Vec<(u16, Vec<(String, String)>)>,
    /// Header lines in order.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
    /// The body came chunked.
    pub chunked: bool,
}

impl Response {
    /// The first value of `name` (case-insensitive).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`.
    #[must_use]
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text.
    #[must_use]
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// A connection.
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    /// Connects with a 30 s read timeout (a hang fails the test instead of blocking it).
    ///
    /// # Panics
    /// When the connection fails.
    #[must_use]
    pub fn connect(address: SocketAddr) -> Self {
        let stream = TcpStream::connect(address).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Self {
            stream,
            buf: Vec::new(),
        }
    }

    /// Another handle to the socket (to read or write around the response parser).
    ///
    /// # Panics
    /// When the descriptor cannot be duplicated.
    #[must_use]
    pub fn stream_clone(&self) -> TcpStream {
        self.stream.try_clone().expect("dup")
    }

    /// Writes raw bytes.
    ///
    /// # Panics
    /// On a write error.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends `GET path` with keep-alive and reads the answer.
    pub fn get(&mut self, path: &str) -> Response {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n\r\n").as_bytes());
        self.read_response(false).expect("response")
    }

    /// Reads until at least one more byte arrives; false at EOF or on error.
    fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    fn line(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return Some(line);
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn take(&mut self, n: usize) -> Option<Vec<u8>> {
        while self.buf.len() < n {
            if !self.fill() {
                return None;
            }
        }
        Some(self.buf.drain(..n).collect())
    }

    /// True when the server closed the connection (EOF with nothing buffered).
    pub fn is_closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }

    /// Reads one response (interim ones gathered); `head_request` means no body follows.
    /// None when the connection closed first.
    pub fn read_response(&mut self, head_request: bool) -> Option<Response> {
        let mut response = Response::default();
        loop {
            let status_line = self.line()?;
            let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
            let mut headers = Vec::new();
            loop {
                let line = self.line()?;
                if line.is_empty() {
                    break;
                }
                let (name, value) = line.split_once(':')?;
                headers.push((name.to_owned(), value.trim().to_owned()));
            }
            if (100..200).contains(&status) {
                response.interim.push((status, headers));
                continue;
            }
            response.status = status;
            response.headers = headers;
            break;
        }
        if head_request || response.status == 204 || response.status == 304 {
            return Some(response);
        }
        if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            response.chunked = true;
            loop {
                let size =
                    usize::from_str_radix(self.line()?.split(';').next()?.trim(), 16).ok()?;
                if size == 0 {
                    while !self.line()?.is_empty() {}
                    break;
                }
                let data = self.take(size)?;
                response.body.extend_from_slice(&data);
                self.line()?;
            }
        } else if let Some(length) = response.header("content-length") {
            let length: usize = length.parse().ok()?;
            response.body = self.take(length)?;
        } else {
            while self.fill() {}
            response.body = std::mem::take(&mut self.buf);
        }
        Some(response)
    }
}

/// One request on a fresh connection.
///
/// # Panics
/// When no response comes.
#[must_use]
pub fn request(address: SocketAddr, raw: &[u8]) -> Response {
    let mut client = Client::connect(address);
    client.send(raw);
    client
        .read_response(raw.starts_with(b"HEAD "))
        .expect("a response")
}

/// `GET path` on a fresh connection.
#[must_use]
pub fn get(address: SocketAddr, path: &str) -> Response {
    request(
        address,
        format!("GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}
