//! Property tests: encode then decode is the identity, any split of the input gives the same
//! frames, and no input makes a decoder panic.

use proptest::prelude::*;
use ringrunner_protocol::payload::{ServerMessage, WorkerMessage};
use ringrunner_protocol::rpc::RpcMessage;
use ringrunner_protocol::{Flags, FrameDecoder, FrameHeader, StreamFlags};

#[derive(Debug, Clone)]
struct OwnedFrame {
    header: FrameHeader,
    payload: Vec<u8>,
}

fn any_frame() -> impl Strategy<Value = OwnedFrame> {
    (
        any::<u8>(),
        any::<u8>(),
        any::<u8>(),
        1u8..=15,
        prop::collection::vec(any::<u32>(), 0..=10),
        prop::collection::vec(any::<u8>(), 0..600),
    )
        .prop_map(|(flags, stream, reserved, version, options, payload)| {
            let mut header =
                FrameHeader::with_options(Flags(flags), &options, payload.len() as u32)
                    .unwrap()
                    .with_stream(StreamFlags(stream));
            header.reserved = reserved;
            header.version = version;
            OwnedFrame { header, payload }
        })
}

fn encode_all(frames: &[OwnedFrame]) -> Vec<u8> {
    let mut wire = Vec::new();
    for frame in frames {
        frame
            .header
            .encode_frame_into(&frame.payload, &mut wire)
            .unwrap();
    }
    wire
}

/// Feeds `wire` cut at `cuts` and collects every frame.
fn decode_split(wire: &[u8], cuts: &[usize]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (wire.len() + 1)).collect();
    points.push(0);
    points.push(wire.len());
    points.sort_unstable();
    let mut decoder = FrameDecoder::default();
    let mut frames = Vec::new();
    for pair in points.windows(2) {
        decoder.feed(&wire[pair[0]..pair[1]]);
        while let Some(frame) = decoder.next_frame().unwrap() {
            frames.push((frame.header, frame.payload.to_vec()));
        }
    }
    decoder.finish().unwrap();
    frames
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(frames in prop::collection::vec(any_frame(), 1..8)) {
        let decoded = decode_split(&encode_all(&frames), &[]);
        prop_assert_eq!(decoded.len(), frames.len());
        for ((header, payload), frame) in decoded.iter().zip(&frames) {
            prop_assert_eq!(header, &frame.header);
            prop_assert_eq!(payload, &frame.payload);
        }
    }

    #[test]
    fn any_split_gives_the_same_frames(
        frames in prop::collection::vec(any_frame(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..40),
    ) {
        let wire = encode_all(&frames);
        prop_assert_eq!(decode_split(&wire, &cuts), decode_split(&wire, &[]));
    }

    #[test]
    fn lent_buffer_reads_match_feeds(
        frames in prop::collection::vec(any_frame(), 1..6),
        read_sizes in prop::collection::vec(1usize..300, 1..40),
    ) {
        let wire = encode_all(&frames);
        let mut decoder = FrameDecoder::default();
        let mut offset = 0;
        let mut count = 0;
        for size in read_sizes.iter().cycle() {
            if offset == wire.len() {
                break;
            }
            let end = (offset + size).min(wire.len());
            let mut lent = decoder.take_read_buffer(*size);
            lent.extend_from_slice(&wire[offset..end]);
            decoder.restore_read_buffer(lent);
            offset = end;
            while decoder.next_frame().unwrap().is_some() {
                count += 1;
            }
        }
        prop_assert_eq!(count, frames.len());
        decoder.finish().unwrap();
    }

    #[test]
    fn decoders_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..2048),
        cuts in prop::collection::vec(any::<usize>(), 0..16),
        max_payload in any::<u32>(),
    ) {
        let mut decoder = FrameDecoder::new(max_payload);
        let mut points: Vec<usize> = cuts.iter().map(|cut| cut % (bytes.len() + 1)).collect();
        points.extend([0, bytes.len()]);
        points.sort_unstable();
        for pair in points.windows(2) {
            decoder.feed(&bytes[pair[0]..pair[1]]);
            while let Ok(Some(frame)) = decoder.next_frame() {
                let _ = WorkerMessage::from_frame(&frame);
                let _ = ServerMessage::from_frame(&frame);
                if let Ok(rpc) = RpcMessage::from_frame(&frame) {
                    let _ = rpc.service_method();
                }
            }
        }
        let _ = decoder.finish();
    }

    #[test]
    fn frame_meanings_never_panic(frame in any_frame()) {
        let wire = encode_all(std::slice::from_ref(&frame));
        let mut decoder = FrameDecoder::default();
        decoder.feed(&wire);
        let decoded = decoder.next_frame().unwrap().unwrap();
        let _ = WorkerMessage::from_frame(&decoded);
        let _ = ServerMessage::from_frame(&decoded);
        let _ = RpcMessage::from_frame(&decoded);
    }
}

/// In steady state the decoder reuses its buffer: after warm-up, thousands of frames in
/// uneven pieces move neither the buffer nor its capacity (frames are borrowed, not owned).
#[test]
fn steady_state_decoding_does_not_allocate() {
    let frame = OwnedFrame {
        header: FrameHeader::with_options(Flags::CODEC_PROTO, &[16], 1024).unwrap(),
        payload: vec![7; 1024],
    };
    let wire = encode_all(&vec![frame; 64]);
    let mut decoder = FrameDecoder::default();
    let decode_round = |decoder: &mut FrameDecoder| {
        let mut count = 0;
        for piece in wire.chunks(1500) {
            let mut lent = decoder.take_read_buffer(piece.len());
            lent.extend_from_slice(piece);
            decoder.restore_read_buffer(lent);
            while let Some(frame) = decoder.next_frame().unwrap() {
                assert_eq!(frame.payload.len(), 1024);
                count += 1;
            }
        }
        assert_eq!(count, 64);
    };
    decode_round(&mut decoder);
    let lent = decoder.take_read_buffer(0);
    let (pointer, capacity) = (lent.as_ptr(), lent.capacity());
    decoder.restore_read_buffer(lent);
    for _ in 0..100 {
        decode_round(&mut decoder);
    }
    let lent = decoder.take_read_buffer(0);
    assert_eq!((lent.as_ptr(), lent.capacity()), (pointer, capacity));
}
