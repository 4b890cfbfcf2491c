//! RPC connections: read goridge RPC frames, run each call and write its reply (spec
//! relay-protocol §6). Calls on one connection run one after another, replies in request
//! order (the PHP client has one call in flight a connection; Go's multiplexing client
//! correlates by sequence number, which order does not upset). A client that stops reading
//! its replies is closed after `rpc.write_timeout` (rr waits for ever).
//!
//! Worst-case work per input byte: one copy into the decoder and one into the call (a
//! frame's header is checked once, in constant time, before its payload is buffered).

use super::RpcShared;
use crate::aio::Stream;
use crate::plugins::client_io::{write_all_within, WriteEnd};
use ringrunner_protocol::frame::Flags;
use ringrunner_protocol::rpc::{encode_rpc_reply, Codec, RpcCallError, RpcMessage};
use ringrunner_protocol::FrameDecoder;
use std::sync::Arc;
use std::time::Duration;

/// The largest RPC frame payload accepted (a frame announcing more closes the connection):
/// room for big `kv` values, bounded so a 12-byte header cannot claim gigabytes.
pub const MAX_RPC_PAYLOAD: u32 = 32 << 20;

/// A frame that has begun must be whole within this long; an idle connection between
/// frames may stay open (workers keep theirs for their whole life).
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(60);

const READ_CHUNK: usize = 64 * 1024;

/// A request copied out of the decoder's buffer (the call awaits; the buffer moves on).
struct Call {
    seq: u32,
    flags: Flags,
    method: Vec<u8>,
    body: Vec<u8>,
}

pub(super) async fn serve(stream: Stream, shared: Arc<RpcShared>) {
    let mut decoder = FrameDecoder::new(MAX_RPC_PAYLOAD);
    let mut buf = vec![0; READ_CHUNK];
    let mut out = Vec::new();
    let mut frame_deadline = None;
    loop {
        loop {
            let call = match decoder.next_frame() {
                Ok(Some(frame)) => match RpcMessage::from_frame(&frame) {
                    Ok(message) => Call {
                        seq: message.seq,
                        flags: message.flags,
                        method: message.method.to_vec(),
                        body: message.body.to_vec(),
                    },
                    Err(error) => {
                        // rr closes without a reply (spec relay-protocol §6.5).
                        tracing::debug!(target: "rpc", %error, "malformed rpc frame, connection closed");
                        return stream.shut_down();
                    }
                },
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(target: "rpc", %error, "bad rpc frame, connection closed");
                    return stream.shut_down();
                }
            };
            frame_deadline = None;
            out.clear();
            answer(&shared, &call, &mut out).await;
            let (written, returned) =
                write_all_within(&stream, std::mem::take(&mut out), shared.write_timeout).await;
            match written {
                Ok(()) => {}
                Err(WriteEnd::Stalled) => {
                    tracing::warn!(target: "rpc", timeout = ?shared.write_timeout,
                        "rpc client stopped reading its replies: write_timeout elapsed, connection closed");
                    return stream.shut_down();
                }
                Err(WriteEnd::Closed) => return stream.shut_down(),
            }
            out = returned.unwrap_or_default();
            if out.capacity() > READ_CHUNK {
                // A large reply's room is not kept for an idle connection.
                out = Vec::new();
            }
        }
        if decoder.is_collecting_stray_output() {
            tracing::debug!(target: "rpc", "not a goridge frame, connection closed");
            return stream.shut_down();
        }
        if decoder.buffered_len() > 0 {
            frame_deadline.get_or_insert_with(|| tokio::time::Instant::now() + FRAME_TIMEOUT);
        }
        let stopping = shared.lifecycle.stop.notified();
        if shared.lifecycle.is_stopping() && frame_deadline.is_none() {
            return stream.shut_down();
        }
        let read = stream.read(buf);
        let (result, returned) = tokio::select! {
            read = read => read,
            () = stopping, if frame_deadline.is_none() => return stream.shut_down(),
            () = sleep_until(frame_deadline) => {
                tracing::debug!(target: "rpc", "rpc frame not completed in time, connection closed");
                return stream.shut_down();
            }
        };
        buf = returned;
        match result {
            Ok(0) | Err(_) => return stream.shut_down(),
            Ok(read) => decoder.feed(&buf[..read]),
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Runs one call and appends its reply frame to `out`.
async fn answer(shared: &RpcShared, call: &Call, out: &mut Vec<u8>) {
    let message = RpcMessage {
        seq: call.seq,
        flags: call.flags,
        method: &call.method,
        body: &call.body,
    };
    let codec = message.codec();
    let result = run(shared, &message, codec).await;
    let encoded = match &result {
        Ok(body) => encode_rpc_reply(&message, Ok(body), out),
        Err(text) => encode_rpc_reply(&message, Err(text), out),
    };
    if let Err(error) = encoded {
        // A reply past the frame limit: say so instead.
        out.clear();
        let text = format!("rpc: reply too large: {error}");
        let _ = encode_rpc_reply(&message, Err(&text), out);
    }
}

async fn run(
    shared: &RpcShared,
    message: &RpcMessage<'_>,
    codec: Codec,
) -> Result<Vec<u8>, String> {
    let (service_name, method) = message.service_method().map_err(|e| e.to_string())?;
    let full_name = || String::from_utf8_lossy(message.method).into_owned();
    let service = shared
        .find(service_name)
        .ok_or_else(|| RpcCallError::NoService(full_name()).to_string())?;
    if codec == Codec::Proto {
        if let Some(call) = service.call_proto(method, message.body) {
            return call.await;
        }
    }
    let arg = super::services::decode_arg(codec, message.body)?;
    let call = service
        .call(method, arg)
        .ok_or_else(|| RpcCallError::NoMethod(full_name()).to_string())?;
    let reply = call.await?;
    super::services::encode_reply(codec, reply)
}

#[cfg(test)]
mod tests {
    use super::super::services::{Reply, RpcService};
    use super::super::RpcShared;
    use super::*;
    use crate::plugins::{Directory, Lifecycle, LocalFuture};

    /// A service with one JSON method and one protobuf method (echoing the message).
    struct Echo;

    impl RpcService for Echo {
        fn service(&self) -> &'static str {
            "echo"
        }

        fn call<'a>(
            &'a self,
            method: &'a str,
            arg: serde_json::Value,
        ) -> Option<LocalFuture<'a, Result<Reply, String>>> {
            (method == "Json").then(|| {
                Box::pin(std::future::ready(Ok(Reply::Json(arg))))
                    as LocalFuture<'a, Result<Reply, String>>
            })
        }

        fn call_proto<'a>(
            &'a self,
            method: &'a str,
            message: &'a [u8],
        ) -> Option<LocalFuture<'a, Result<Vec<u8>, String>>> {
            (method == "Proto").then(|| {
                Box::pin(std::future::ready(Ok(message.to_vec())))
                    as LocalFuture<'a, Result<Vec<u8>, String>>
            })
        }
    }

    fn call(
        shared: &RpcShared,
        flags: Flags,
        method: &[u8],
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        let message = RpcMessage {
            seq: 1,
            flags,
            method,
            body,
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(run(shared, &message, message.codec()))
    }

    #[test]
    fn protobuf_arguments_reach_the_services_that_take_them() {
        let shared = RpcShared {
            services: vec![Box::new(Echo)],
            directory: Arc::new(Directory::default()),
            lifecycle: Arc::new(Lifecycle::default()),
            write_timeout: Duration::from_secs(1),
        };
        assert_eq!(
            call(&shared, Flags::CODEC_PROTO, b"echo.Proto", b"\x0a\x02hi"),
            Ok(b"\x0a\x02hi".to_vec())
        );
        assert_eq!(
            call(&shared, Flags::CODEC_JSON, b"echo.Json", b"\"x\""),
            Ok(b"\"x\"".to_vec())
        );
        let refused = call(&shared, Flags::CODEC_PROTO, b"echo.Json", b"\x0a\x00").unwrap_err();
        assert!(
            refused.contains("Proto codec is not supported"),
            "{refused}"
        );
        assert_eq!(
            call(&shared, Flags::CODEC_JSON, b"echo.Nope", b"1"),
            Err("rpc: can't find method echo.Nope".into())
        );
        assert_eq!(
            call(&shared, Flags::CODEC_JSON, b"none.Nope", b"1"),
            Err("rpc: can't find service none.Nope".into())
        );
    }
}
