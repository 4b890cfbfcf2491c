//! Calls to the server's RPC plane from PHP, as an application makes them.

use ringrunner_protocol::frame::Flags;
use ringrunner_protocol::rpc::{encode_rpc_frame, RpcMessage};
use ringrunner_protocol::FrameDecoder;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

/// Runs `rpc_call.php DSN METHOD ARG [raw]` (our PHP goridge RPC client): Ok(the reply as
/// JSON, or raw text) or Err(the error text).
///
/// # Panics
/// When PHP cannot run the script.
pub fn php_call(dsn: &str, method: &str, arg: &Value, raw: bool) -> Result<String, String> {
    let mut command = Command::new(crate::php_binary());
    command
        .arg(crate::php_dir().join("rpc_call.php"))
        .args([dsn, method, &arg.to_string()]);
    if raw {
        command.arg("raw");
    }
    let output = command.output().expect("php runs");
    let stdout = String::from_utf8_lossy(&output.stdout)
        .trim_end()
        .to_owned();
    match stdout.strip_prefix("ERROR: ") {
        Some(error) => Err(error.to_owned()),
        None if output.status.success() => Ok(stdout),
        None => panic!(
            "{method} failed: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    }
}

/// Sends one JSON RPC call per connection, every call written before any reply is read, so
/// the server has them all in hand at once; gives each reply (Ok body or Err text).
///
/// # Panics
/// When a connection fails, or a reply takes over 30 s.
pub fn concurrent_calls(port: u16, calls: &[(&str, Value)]) -> Vec<Result<String, String>> {
    let mut streams: Vec<TcpStream> = calls
        .iter()
        .map(|_| {
            let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            stream
        })
        .collect();
    for (stream, (method, arg)) in streams.iter_mut().zip(calls) {
        let mut frame = Vec::new();
        let body = arg.to_string();
        encode_rpc_frame(
            1,
            Flags::CODEC_JSON,
            method.as_bytes(),
            body.as_bytes(),
            &mut frame,
        )
        .unwrap();
        stream.write_all(&frame).unwrap();
    }
    streams
        .iter_mut()
        .map(|stream| {
            let mut decoder = FrameDecoder::new(1 << 20);
            let mut buf = [0; 4096];
            loop {
                if let Some(frame) = decoder.next_frame().unwrap() {
                    let reply = RpcMessage::from_frame(&frame).unwrap();
                    let body = String::from_utf8_lossy(reply.body).into_owned();
                    return if reply.is_error() {
                        Err(body)
                    } else {
                        Ok(body)
                    };
                }
                let read = stream.read(&mut buf).expect("a reply within 30 s");
                assert!(read > 0, "the server closed the connection");
                decoder.feed(&buf[..read]);
            }
        })
        .collect()
}
