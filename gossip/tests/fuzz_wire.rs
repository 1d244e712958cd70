//! Fuzz targets of the gossip frame decoder (`FrameCodec::open`), run by `cargo test` for a
//! bounded number of inputs (bolero's random engine; `BOLERO_RANDOM_ITERATIONS` overrides the
//! count, a failure prints the `BOLERO_RANDOM_SEED` that replays it, and any file under
//! `tests/__fuzz__/<target>/corpus` or `crashes` is replayed first — where a found crash is
//! checked in as a regression input).
//!
//! Properties: no input makes the decoder panic; a frame that is not sealed with the cluster
//! secret is refused; a body sealed with the right secret decodes or is refused as malformed,
//! never anything else; and for every envelope the encoder can build, open(seal(e)) == e.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use starling_gossip::wire::{ENCRYPTED, Encryption, MAX_FRAME, WIRE_VERSION};
use starling_gossip::{Envelope, FrameCodec, Message, Peer, WireError};
use starling_store::{Key, NodeId, RegionId};
use std::sync::atomic::{AtomicUsize, Ordering};

const SECRET: &[u8] = b"fuzzing-cluster-secret";
/// Inputs per target in `cargo test`.
const ITERATIONS: usize = 20_000;
/// Inputs of the round-trip target (its envelopes are larger: about 2.5k execs a second).
const ROUND_TRIPS: usize = 5_000;

/// Seals an arbitrary body with the right tag, as a member holding the secret would.
fn sealed_body(body: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET).unwrap();
    mac.update(&[WIRE_VERSION]);
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut f = vec![WIRE_VERSION];
    f.extend_from_slice(&tag);
    f.extend_from_slice(body);
    f
}

/// Encrypts an arbitrary body as a member holding the secret would, following the documented
/// format (`gossip::wire`): the key is HMAC-SHA256 of a fixed label under the secret.
fn encrypted_body(body: &[u8]) -> Vec<u8> {
    let mut kdf = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET).unwrap();
    kdf.update(b"starling gossip frame encryption key, protocol 4");
    let key: [u8; 32] = kdf.finalize().into_bytes().into();
    let aead = XChaCha20Poly1305::new(&key.into());
    let nonce = XNonce::default();
    let mut sealed = body.to_vec();
    let tag = aead
        .encrypt_inout_detached(&nonce, &[ENCRYPTED], sealed.as_mut_slice().into())
        .unwrap();
    let mut f = vec![ENCRYPTED];
    f.extend_from_slice(&nonce);
    f.extend_from_slice(&sealed);
    f.extend_from_slice(&tag);
    f
}

#[test]
fn fuzz_open_arbitrary_frames() {
    let codec = FrameCodec::new(SECRET);
    let execs = AtomicUsize::new(0);
    bolero::check!()
        .with_iterations(ITERATIONS)
        .for_each(|bytes: &[u8]| {
            execs.fetch_add(1, Ordering::Relaxed);
            // Random bytes never carry the right tag: refused, without a panic.
            match codec.open(bytes) {
                Ok(env) => panic!("an unauthenticated frame was accepted: {env:?}"),
                Err(
                    WireError::Truncated
                    | WireError::Version(_)
                    | WireError::Unauthenticated
                    | WireError::TooLarge(_),
                ) => {}
                Err(WireError::Malformed) => {
                    panic!("a body was decoded before its tag was checked")
                }
                Err(WireError::Entropy) => panic!("opening a frame needs no randomness"),
            }
        });
    eprintln!(
        "fuzz_open_arbitrary_frames: {} execs",
        execs.load(Ordering::Relaxed)
    );
}

#[test]
fn fuzz_open_authenticated_bodies() {
    // Encrypted frames, and frames in clear (taken during an upgrade to encryption).
    let codec = FrameCodec::new(SECRET);
    let upgrading = FrameCodec::with_encryption(SECRET, Encryption::Optional);
    let execs = AtomicUsize::new(0);
    bolero::check!()
        .with_iterations(ITERATIONS)
        .for_each(|body: &[u8]| {
            execs.fetch_add(1, Ordering::Relaxed);
            // Behind the tag: the postcard decoder sees attacker-shaped bytes.
            for (codec, frame) in [
                (&codec, encrypted_body(body)),
                (&upgrading, sealed_body(body)),
            ] {
                match codec.open(&frame) {
                    Ok(env) => {
                        // What decodes re-encodes to a frame that decodes the same.
                        let again = codec.seal(&env).unwrap();
                        assert_eq!(codec.open(&again[4..]).unwrap(), env);
                    }
                    Err(WireError::Malformed) => {}
                    Err(e) => panic!("a sealed body was refused as {e:?}"),
                }
            }
        });
    eprintln!(
        "fuzz_open_authenticated_bodies: {} execs",
        execs.load(Ordering::Relaxed)
    );
}

/// The parts of an envelope the generator builds (`Delta`s need a CRDT record: covered by
/// the store's own property tests).
type Parts = (
    u8,
    u64,
    String,
    Vec<u8>,
    Vec<u64>,
    Vec<(u32, Vec<u64>)>,
    Vec<u32>,
    String,
);

fn envelope((kind, n, name, bytes, level, ranges, buckets, key): Parts) -> Envelope {
    let from = Peer {
        node: NodeId::new(RegionId((n >> 48) as u16), n & 0xffff),
        region: name.clone(),
        addr: name,
        incarnation: n,
    };
    let msg = match kind % 6 {
        0 => Message::Swim(bytes),
        1 => Message::AeDigest { level },
        2 => Message::AeLeaves { ranges },
        3 => Message::AeWant { buckets },
        4 => Message::HaveRequest {
            id: n,
            key: Key::from(key.as_str()),
        },
        _ => Message::CasRequest {
            id: n,
            key: Key::from(key.as_str()),
            expected: None,
            new: Some(bytes.into()),
        },
    };
    Envelope { from, msg }
}

#[test]
fn fuzz_seal_then_open_round_trips() {
    let codec = FrameCodec::new(SECRET);
    let other = FrameCodec::new(b"another-secret");
    let execs = AtomicUsize::new(0);
    bolero::check!()
        .with_type::<Parts>()
        .with_iterations(ROUND_TRIPS)
        .cloned()
        .for_each(|parts: Parts| {
            execs.fetch_add(1, Ordering::Relaxed);
            let env = envelope(parts);
            match codec.seal(&env) {
                Ok(frame) => {
                    let len = u32::from_be_bytes(frame[..4].try_into().unwrap()) as usize;
                    assert_eq!(len, frame.len() - 4);
                    assert!(len <= MAX_FRAME);
                    assert_eq!(codec.open(&frame[4..]).unwrap(), env);
                    assert_eq!(other.open(&frame[4..]), Err(WireError::Unauthenticated));
                    // Any one flipped bit is refused.
                    let mut flipped = frame[4..].to_vec();
                    let at = (len * 7 + 3) % flipped.len();
                    flipped[at] ^= 1 << (len % 8);
                    assert!(codec.open(&flipped).is_err(), "bit {at} flipped");
                }
                Err(WireError::TooLarge(_)) => {}
                Err(e) => panic!("seal failed: {e:?}"),
            }
        });
    eprintln!(
        "fuzz_seal_then_open_round_trips: {} execs",
        execs.load(Ordering::Relaxed)
    );
}
