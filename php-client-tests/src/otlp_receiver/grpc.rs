//! The receiver's OTLP/gRPC side: an h2c server answering the unary
//! `TraceService/Export` call, decoding the length-prefixed (possibly gzipped) message.

use super::{record, Inbox, ReceivedExport};
use bytes::Bytes;
use flate2::read::GzDecoder;
use ringrunner_protocol::otlp::ExportTraceServiceRequest;
use std::io::Read;
use std::sync::Arc;

/// The largest message accepted.
const MESSAGE_BYTES_MAX: usize = 64 << 20;

/// Serves gRPC on `listener` until the process ends (a thread of its own).
pub(super) fn serve(listener: std::net::TcpListener, inbox: Arc<Inbox>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let _ = listener.set_nonblocking(true);
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        while let Ok((socket, _)) = listener.accept().await {
            tokio::spawn(connection(socket, Arc::clone(&inbox)));
        }
    });
}

async fn connection(socket: tokio::net::TcpStream, inbox: Arc<Inbox>) {
    let Ok(mut connection) = h2::server::handshake(socket).await else {
        return;
    };
    while let Some(Ok((request, respond))) = connection.accept().await {
        tokio::spawn(call(request, respond, Arc::clone(&inbox)));
    }
}

async fn call(
    request: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    inbox: Arc<Inbox>,
) {
    let path = request.uri().path().to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_owned(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let mut body = request.into_body();
    let mut bytes = Vec::new();
    while let Some(Ok(chunk)) = body.data().await {
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
        if bytes.len() > MESSAGE_BYTES_MAX {
            return;
        }
    }
    let decoded = message(&bytes);
    let status = match decoded {
        Some((gzip, request)) => {
            record(
                &inbox,
                ReceivedExport {
                    path,
                    content_type: "application/grpc".into(),
                    gzip,
                    headers,
                    request,
                },
            );
            "0"
        }
        None => "13",
    };
    let answer = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .expect("a static answer");
    let Ok(mut stream) = respond.send_response(answer, false) else {
        return;
    };
    // An empty ExportTraceServiceResponse, uncompressed.
    let _ = stream.send_data(Bytes::from_static(&[0, 0, 0, 0, 0]), false);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static(status));
    let _ = stream.send_trailers(trailers);
}

/// The length-prefixed message: (it was gzipped, the export).
fn message(bytes: &[u8]) -> Option<(bool, ExportTraceServiceRequest)> {
    let (&flag, rest) = bytes.split_first()?;
    let length = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let payload = rest.get(4..4 + length)?;
    let gzip = flag == 1;
    let plain = if gzip {
        let mut plain = Vec::new();
        GzDecoder::new(payload).read_to_end(&mut plain).ok()?;
        plain
    } else {
        payload.to_vec()
    };
    Some((gzip, ExportTraceServiceRequest::from_protobuf(&plain).ok()?))
}
