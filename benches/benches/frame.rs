//! Frame encode and decode for 64 B, 1 KiB and 64 KiB payloads.
//!
//! `encode/header` is what the engine pays per request (the body is written by a vectored
//! write, never copied); `encode/contiguous` adds copying context and body into a reused
//! buffer; `decode` feeds a reused decoder one frame at a time, as a relay read would.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringrunner_protocol::payload::{data_header, encode_data_frame};
use ringrunner_protocol::{Flags, FrameDecoder, StreamFlags};

const SIZES: [(usize, &str); 3] = [(64, "64B"), (1024, "1KiB"), (64 * 1024, "64KiB")];
const CONTEXT: &[u8] = b"\x08\xc8\x01";

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    for (size, label) in SIZES {
        let body = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("header", label), &body, |b, body| {
            b.iter(|| {
                data_header(
                    Flags::CODEC_PROTO,
                    StreamFlags::EMPTY,
                    CONTEXT.len(),
                    black_box(body.len()),
                )
            });
        });
        let mut out = Vec::with_capacity(size + 64);
        group.bench_with_input(BenchmarkId::new("contiguous", label), &body, |b, body| {
            b.iter(|| {
                out.clear();
                encode_data_frame(
                    Flags::CODEC_PROTO,
                    StreamFlags::EMPTY,
                    CONTEXT,
                    black_box(body),
                    &mut out,
                )
                .unwrap();
                black_box(out.len())
            });
        });
    }
    group.finish();
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (size, label) in SIZES {
        let mut wire = Vec::new();
        encode_data_frame(
            Flags::CODEC_PROTO,
            StreamFlags::EMPTY,
            CONTEXT,
            &vec![0x5a; size],
            &mut wire,
        )
        .unwrap();
        let mut decoder = FrameDecoder::with_capacity(u32::MAX, 128 * 1024);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::from_parameter(label), &wire, |b, wire| {
            b.iter(|| {
                decoder.feed(black_box(wire));
                let frame = decoder.next_frame().unwrap().unwrap();
                black_box(frame.payload.len())
            });
        });
    }
    group.finish();
}

criterion_group!(benches, encode, decode);
criterion_main!(benches);
