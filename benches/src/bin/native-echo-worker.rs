//! A goridge worker in Rust that echoes every request: the no-PHP ceiling for benchmarks.
//!
//! `native-echo-worker` speaks the relay protocol on stdin/stdout (pid handshake, stop,
//! data frames echoed with their codec and context). `native-echo-worker --ping-pong SIZE`
//! instead copies SIZE-byte messages back unframed: the anchor a relay round trip is
//! compared with. `native-echo-worker --http` answers every HTTP request with 200 and
//! `Hello, world!`: the no-PHP ceiling of `rr serve`. `native-echo-worker --tcp` answers
//! every tcp plugin event with `WRITE` and the event's bytes: the ceiling of the tcp plugin.

use ringrunner_protocol::payload::{
    encode_data_frame, encode_pid_reply, ControlMessage, ServerMessage,
};
use ringrunner_protocol::FrameDecoder;
use std::io::{Read, Write};

fn main() {
    let mut args = std::env::args().skip(1);
    let result = match args.next().as_deref() {
        Some("--ping-pong") => {
            let size = args.next().and_then(|s| s.parse().ok()).unwrap_or(1024);
            ping_pong(size)
        }
        Some("--http") => serve(Reply::Hello),
        Some("--tcp") => serve(Reply::TcpWrite),
        _ => serve(Reply::Echo),
    };
    if let Err(error) = result {
        eprintln!("native-echo-worker: {error}");
        std::process::exit(1);
    }
}

fn ping_pong(size: usize) -> std::io::Result<()> {
    let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
    let mut message = vec![0; size];
    while input.read_exact(&mut message).is_ok() {
        output.write_all(&message)?;
        output.flush()?;
    }
    Ok(())
}

/// What a data frame gets back.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// The frame itself.
    Echo,
    /// An `http.v1.Response` with status 200 and a fixed body.
    Hello,
    /// The tcp plugin's `WRITE` with the event's body (nothing for CONNECTED and CLOSE).
    TcpWrite,
}

/// `http.v1.Response { status: 200 }`: field 1, varint 200 (0xC8 0x01).
const HTTP_200_CONTEXT: &[u8] = &[0x08, 0xC8, 0x01];
const HELLO_BODY: &[u8] = b"Hello, world!\n";

fn serve(mode: Reply) -> std::io::Result<()> {
    let (mut input, mut output) = (std::io::stdin().lock(), std::io::stdout().lock());
    let mut decoder = FrameDecoder::default();
    let mut read_buf = vec![0; 64 * 1024];
    let mut reply = Vec::with_capacity(64 * 1024);
    loop {
        let frame = loop {
            if let Some(frame) = decoder.next_frame().map_err(std::io::Error::other)? {
                break frame;
            }
            let read = input.read(&mut read_buf)?;
            if read == 0 {
                return Ok(());
            }
            decoder.feed(&read_buf[..read]);
        };
        reply.clear();
        match ServerMessage::from_frame(&frame).map_err(std::io::Error::other)? {
            ServerMessage::Control(ControlMessage::Pid(_)) => {
                encode_pid_reply(std::process::id(), &mut reply)
            }
            ServerMessage::Control(ControlMessage::Stop) => return Ok(()),
            ServerMessage::StreamStop | ServerMessage::Pong => continue,
            ServerMessage::Data(data) if mode == Reply::Hello => {
                encode_data_frame(
                    data.codec,
                    Default::default(),
                    HTTP_200_CONTEXT,
                    HELLO_BODY,
                    &mut reply,
                )
                .map_err(std::io::Error::other)?;
            }
            ServerMessage::Data(data) if mode == Reply::TcpWrite => {
                encode_data_frame(
                    data.codec,
                    Default::default(),
                    b"WRITE",
                    data.body,
                    &mut reply,
                )
                .map_err(std::io::Error::other)?;
            }
            ServerMessage::Data(data) => {
                encode_data_frame(
                    data.codec,
                    Default::default(),
                    data.context,
                    data.body,
                    &mut reply,
                )
                .map_err(std::io::Error::other)?;
            }
        }
        output.write_all(&reply)?;
        output.flush()?;
    }
}
