//! A real OTLP/HTTP receiver for the tests and benches: an HTTP/1.1 server on 127.0.0.1
//! that decodes each `ExportTraceServiceRequest` (gzip aware) and answers 200, and lets a
//! test wait until a number of spans has arrived (an event, never a sleep); its gRPC side
//! (`grpc.rs`) answers the `TraceService/Export` call over h2c.

mod grpc;

use flate2::read::GzDecoder;
use ringrunner_protocol::otlp::{ExportTraceServiceRequest, KeyValue, Span};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The largest export body accepted.
const BODY_BYTES_MAX: usize = 64 << 20;

/// One POST as received.
#[derive(Debug, Clone)]
pub struct ReceivedExport {
    /// The request path.
    pub path: String,
    /// Its `Content-Type`.
    pub content_type: String,
    /// It came gzipped.
    pub gzip: bool,
    /// Its header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The decoded export.
    pub request: ExportTraceServiceRequest,
}

/// A span with where it came from.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    /// Its resource's attributes.
    pub resource: Vec<KeyValue>,
    /// Its instrumentation scope's name.
    pub scope: String,
    /// The span.
    pub span: Span,
}

impl ReceivedSpan {
    /// The span's attribute `key`.
    #[must_use]
    pub fn attribute(&self, key: &str) -> Option<&KeyValue> {
        self.span.attributes.iter().find(|kv| kv.key == key)
    }

    /// The resource's attribute `key`, as text.
    #[must_use]
    pub fn resource_text(&self, key: &str) -> Option<&str> {
        self.resource
            .iter()
            .find(|kv| kv.key == key)
            .and_then(KeyValue::as_str)
    }
}

#[derive(Debug, Default)]
struct Inbox {
    exports: Mutex<Vec<ReceivedExport>>,
    arrived: Condvar,
    /// Keep only the count (a bench's sink), not the exports.
    count_only: bool,
    spans_total: AtomicUsize,
}

/// The running receiver; stops when dropped.
#[derive(Debug)]
pub struct OtlpReceiver {
    address: SocketAddr,
    inbox: Arc<Inbox>,
    stopping: Arc<AtomicBool>,
}

impl OtlpReceiver {
    /// Listens on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When no port can be bound.
    #[must_use]
    pub fn start() -> Self {
        Self::start_on("127.0.0.1:0").expect("bind the OTLP receiver")
    }

    /// Listens on `address`.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn start_on(address: &str) -> std::io::Result<Self> {
        Self::listen(address, false)
    }

    /// Listens on `address`, counting the spans without keeping them (for load).
    ///
    /// # Errors
    /// The address cannot be bound.
    pub fn start_counting_on(address: &str) -> std::io::Result<Self> {
        Self::listen(address, true)
    }

    /// Listens for OTLP/gRPC (h2c) on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When no port can be bound.
    #[must_use]
    pub fn start_grpc() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OTLP/gRPC receiver");
        let address = listener.local_addr().expect("its address");
        let inbox = Arc::new(Inbox::default());
        let thread_inbox = Arc::clone(&inbox);
        std::thread::spawn(move || grpc::serve(listener, thread_inbox));
        Self {
            address,
            inbox,
            // The gRPC thread lives as long as the test process.
            stopping: Arc::new(AtomicBool::new(true)),
        }
    }

    fn listen(address: &str, count_only: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address)?;
        let address = listener.local_addr()?;
        let inbox = Arc::new(Inbox {
            count_only,
            ..Inbox::default()
        });
        let stopping = Arc::new(AtomicBool::new(false));
        let (thread_inbox, thread_stopping) = (Arc::clone(&inbox), Arc::clone(&stopping));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stopping.load(Ordering::Acquire) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let inbox = Arc::clone(&thread_inbox);
                std::thread::spawn(move || serve(stream, &inbox));
            }
        });
        Ok(Self {
            address,
            inbox,
            stopping,
        })
    }

    /// Its address.
    #[must_use]
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The spans received so far, counted as they were decoded.
    #[must_use]
    pub fn spans_total(&self) -> usize {
        self.inbox.spans_total.load(Ordering::Acquire)
    }

    /// The exports received so far.
    #[must_use]
    pub fn exports(&self) -> Vec<ReceivedExport> {
        self.inbox.exports.lock().unwrap().clone()
    }

    /// Every span received so far.
    #[must_use]
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        flatten(&self.inbox.exports.lock().unwrap())
    }

    /// Waits until at least `count` spans have arrived (or `timeout` passed); the spans.
    #[must_use]
    pub fn wait_for_spans(&self, count: usize, timeout: Duration) -> Vec<ReceivedSpan> {
        let deadline = Instant::now() + timeout;
        let mut exports = self.inbox.exports.lock().unwrap();
        loop {
            let spans = flatten(&exports);
            let left = deadline.saturating_duration_since(Instant::now());
            if spans.len() >= count || left.is_zero() {
                return spans;
            }
            exports = self.inbox.arrived.wait_timeout(exports, left).unwrap().0;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Release);
        // Wake the accept loop so that it sees the flag.
        let _ = TcpStream::connect_timeout(&self.address, Duration::from_secs(1));
    }
}

fn flatten(exports: &[ReceivedExport]) -> Vec<ReceivedSpan> {
    let mut spans = Vec::new();
    for export in exports {
        for resource_spans in &export.request.resource_spans {
            let resource = resource_spans
                .resource
                .as_ref()
                .map(|r| r.attributes.clone())
                .unwrap_or_default();
            for scope_spans in &resource_spans.scope_spans {
                let scope = scope_spans
                    .scope
                    .as_ref()
                    .map(|s| s.name.clone())
                    .unwrap_or_default();
                for span in &scope_spans.spans {
                    spans.push(ReceivedSpan {
                        resource: resource.clone(),
                        scope: scope.clone(),
                        span: span.clone(),
                    });
                }
            }
        }
    }
    spans
}

/// Counts an export's spans, keeps it (unless counting only), wakes the waiters.
fn record(inbox: &Inbox, export: ReceivedExport) {
    let spans = flatten_count(&export.request);
    inbox.spans_total.fetch_add(spans, Ordering::AcqRel);
    let mut exports = inbox.exports.lock().unwrap();
    if !inbox.count_only {
        exports.push(export);
    }
    drop(exports);
    inbox.arrived.notify_all();
}

fn flatten_count(request: &ExportTraceServiceRequest) -> usize {
    request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum()
}

/// Serves one connection's requests (keep-alive or not).
fn serve(mut stream: TcpStream, inbox: &Inbox) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    loop {
        let Some(head_end) = read_head(&mut stream, &mut buf) else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .and_then(|line| line.split(' ').nth(1))
            .unwrap_or_default()
            .to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        let length: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if length > BODY_BYTES_MAX {
            return;
        }
        buf.drain(..head_end + 4);
        while buf.len() < length {
            let mut chunk = [0u8; 16384];
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buf.drain(..length).collect();
        let gzip = header("content-encoding").is_some_and(|v| v == "gzip");
        let decoded = if gzip {
            let mut plain = Vec::new();
            GzDecoder::new(body.as_slice())
                .read_to_end(&mut plain)
                .map(|_| plain)
                .ok()
        } else {
            Some(body)
        };
        let request =
            decoded.and_then(|bytes| ExportTraceServiceRequest::from_protobuf(&bytes).ok());
        let answer: &[u8] = match request {
            Some(request) => {
                let content_type = header("content-type").unwrap_or_default();
                let export = ReceivedExport {
                    path,
                    content_type,
                    gzip,
                    headers: headers.clone(),
                    request,
                };
                record(inbox, export);
                b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n"
            }
            None => b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
        };
        if stream.write_all(answer).is_err() {
            return;
        }
        if header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close")) {
            return;
        }
    }
}

/// Reads until `buf` holds a whole head; the offset of its blank line.
fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(end);
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        let mut chunk = [0u8; 4096];
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
