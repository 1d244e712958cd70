//! Sealing and opening gossip frames: encrypted (protocol 4, XChaCha20-Poly1305) against
//! authenticated in clear (protocol 2, HMAC-SHA256), measured in the same run, for a SWIM-sized
//! frame, a typical push and a large anti-entropy batch. `cargo bench -p starling-gossip --bench
//! wire`; the figures are in `bench/gossip-wire.md`.
#![allow(clippy::unwrap_used, missing_docs)] // bench code

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use starling_gossip::{Envelope, FrameCodec, Message, Peer};
use starling_store::{NodeId, RegionId};
use std::hint::black_box;

const SECRET: &[u8] = b"a-cluster-secret-for-the-bench";

fn envelope(body: usize) -> Envelope {
    Envelope {
        from: Peer {
            node: NodeId::new(RegionId::from_name("us"), 1),
            region: "us".into(),
            addr: "10.0.0.1:7946".into(),
            incarnation: 1,
        },
        msg: Message::CallRequest {
            id: 7,
            service: "bench".into(),
            body: Bytes::from(vec![0x5a; body]),
        },
    }
}

fn seal_open(c: &mut Criterion) {
    let clear = FrameCodec::with_versions(SECRET, 2, 1..=3);
    let encrypted = FrameCodec::new(SECRET);
    let mut g = c.benchmark_group("gossip_frame_seal_open");
    for size in [96, 4 << 10, 256 << 10] {
        let env = envelope(size);
        g.throughput(Throughput::Bytes(size as u64));
        for (name, codec) in [("hmac_v2", &clear), ("xchacha_v4", &encrypted)] {
            g.bench_with_input(BenchmarkId::new(name, size), &env, |b, env| {
                b.iter(|| {
                    let f = codec.seal(black_box(env)).unwrap();
                    black_box(codec.open(&f[4..]).unwrap())
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, seal_open);
criterion_main!(benches);
