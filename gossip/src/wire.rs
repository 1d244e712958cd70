//! The wire format between nodes: authenticated, versioned, size-capped frames.
//!
//! A frame is `len: u32 BE` (of what follows) ‖ `version: u8` ‖ `tag: [u8; 32]` ‖ `body`, where
//! `body` is the postcard encoding of an [`Envelope`] and `tag` is HMAC-SHA256 of
//! `version ‖ body` under the cluster secret. A frame over [`MAX_FRAME`], of another version,
//! with a wrong tag, or whose body does not decode is refused with a [`WireError`]; the
//! transport closes that connection and nothing else.

use crate::peer::Peer;
use crate::reconcile::BucketSummary;
use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use starling_store::{Delta, Key, VersionVector};

/// The wire version this build speaks.
pub const WIRE_VERSION: u8 = 1;
/// The largest frame accepted, in bytes (after the length prefix).
pub const MAX_FRAME: usize = 4 << 20;
const TAG: usize = 32;

/// One message between nodes, with its sender.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Who sent it.
    pub from: Peer,
    /// What it says.
    pub msg: Message,
}

/// The protocol, as data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// A SWIM (foca) packet.
    Swim(Vec<u8>),
    /// New records spreading epidemically.
    Push {
        /// The records.
        deltas: Vec<Delta>,
        /// Hops travelled, this one included (1: straight from the node that accepted them).
        hops: u8,
    },
    /// Anti-entropy, step 1: the sender's digests at [`crate::node::AE_DEPTH`].
    AeDigest {
        /// One digest per range of buckets.
        level: Vec<u64>,
    },
    /// Step 2: the leaf digests of the ranges that differ.
    AeLeaves {
        /// (range index, its leaves).
        ranges: Vec<(u32, Vec<u64>)>,
    },
    /// Ships whole buckets: send me your records of these buckets (the asker sends its own
    /// alongside). Sent by builds before [`Message::AeSummary`]; still answered.
    AeWant {
        /// Bucket numbers.
        buckets: Vec<u32>,
    },
    /// Records shipped by anti-entropy.
    AeRecords {
        /// The records.
        deltas: Vec<Delta>,
    },
    /// Which version of `key` do you hold? (For writes acknowledged when durable in K regions.)
    HaveRequest {
        /// Request id, unique at the sender.
        id: u64,
        /// The key.
        key: Key,
    },
    /// The version held (`None`: nothing).
    HaveResponse {
        /// The request id.
        id: u64,
        /// The receiver's version of the key.
        version: Option<VersionVector>,
    },
    /// Execute a compare-and-swap at its owner.
    CasRequest {
        /// Request id, unique at the sender.
        id: u64,
        /// The key.
        key: Key,
        /// Expected version (`None`: absent).
        expected: Option<VersionVector>,
        /// New value (`None`: tombstone).
        new: Option<Bytes>,
    },
    /// The owner's answer.
    CasResponse {
        /// The request id.
        id: u64,
        /// The outcome.
        reply: CasReply,
    },
    /// Run `body` through the handler registered for `service` at the receiver (the owner of
    /// the call's route key in its region; see `GossipHandle::call`).
    CallRequest {
        /// Request id, unique at the sender.
        id: u64,
        /// Which handler.
        service: String,
        /// Its input, opaque here.
        body: Bytes,
    },
    /// The handler's answer.
    CallResponse {
        /// The request id.
        id: u64,
        /// Its output, or why there is none (no such service, or the handler failed).
        reply: Result<Bytes, String>,
    },
    /// Anti-entropy, step 3: the asker's summaries of the buckets that differ; the peer ships
    /// its records that differ ([`Message::AeRecords`]) and asks for the asker's
    /// ([`Message::AeWantKeys`]). See [`crate::reconcile`].
    AeSummary {
        /// Whole buckets, in the order compared.
        buckets: Vec<BucketSummary>,
    },
    /// Step 4: send me your records of these keys.
    AeWantKeys {
        /// (bucket, [`crate::reconcile::key_hash`] of each key wanted).
        buckets: Vec<(u32, Vec<u64>)>,
    },
    /// Send me your records of these keys: a CAS owner reading its region before it executes
    /// (`GossipConfig::cas_repair`).
    FetchRequest {
        /// Request id, unique at the sender.
        id: u64,
        /// The keys.
        keys: Vec<Key>,
    },
    /// The records held of a [`Message::FetchRequest`]'s keys (keys held nowhere left out).
    FetchResponse {
        /// The request id.
        id: u64,
        /// The records.
        deltas: Vec<Delta>,
    },
}

/// A CAS outcome on the wire.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CasReply {
    /// Applied; the new version.
    Applied {
        /// Version after the write.
        version: VersionVector,
    },
    /// Did not match; the current value and version, if the key exists.
    Conflict {
        /// Current value (`None` for a tombstone).
        value: Option<Bytes>,
        /// Current version (`None`: the key does not exist).
        version: Option<VersionVector>,
    },
    /// The owner could not execute it.
    Failed {
        /// Why (for the logs).
        reason: String,
    },
}

/// Why a frame was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    /// Longer than [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the cap")]
    TooLarge(usize),
    /// Too short to hold a version and a tag.
    #[error("truncated frame")]
    Truncated,
    /// Another wire version.
    #[error("unsupported wire version {0}")]
    Version(u8),
    /// The tag does not match: the sender does not have the cluster secret.
    #[error("frame not authenticated by the cluster secret")]
    Unauthenticated,
    /// Authenticated but undecodable.
    #[error("malformed frame body")]
    Malformed,
}

/// Seals and opens frames under one cluster secret.
#[derive(Clone)]
pub struct FrameCodec {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for FrameCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameCodec(<secret>)")
    }
}

impl FrameCodec {
    /// A codec for a cluster secret (any length; HMAC hashes long keys).
    pub fn new(secret: &[u8]) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        FrameCodec { mac }
    }

    /// Encodes an envelope as a whole frame, length prefix included.
    pub fn seal(&self, env: &Envelope) -> Result<Bytes, WireError> {
        let body = postcard::to_allocvec(env).map_err(|_| WireError::Malformed)?;
        let len = 1 + TAG + body.len();
        if len > MAX_FRAME {
            return Err(WireError::TooLarge(len));
        }
        let mut mac = self.mac.clone();
        mac.update(&[WIRE_VERSION]);
        mac.update(&body);
        let tag = mac.finalize().into_bytes();
        let mut out = BytesMut::with_capacity(4 + len);
        out.put_u32(len as u32);
        out.put_u8(WIRE_VERSION);
        out.put_slice(&tag);
        out.put_slice(&body);
        Ok(out.freeze())
    }

    /// Decodes the part of a frame after its length prefix.
    pub fn open(&self, frame: &[u8]) -> Result<Envelope, WireError> {
        if frame.len() > MAX_FRAME {
            return Err(WireError::TooLarge(frame.len()));
        }
        if frame.len() < 1 + TAG {
            return Err(WireError::Truncated);
        }
        let (version, rest) = (frame[0], &frame[1..]);
        if version != WIRE_VERSION {
            return Err(WireError::Version(version));
        }
        let (tag, body) = rest.split_at(TAG);
        let mut mac = self.mac.clone();
        mac.update(&[version]);
        mac.update(body);
        mac.verify_slice(tag)
            .map_err(|_| WireError::Unauthenticated)?;
        let (env, tail) =
            postcard::take_from_bytes::<Envelope>(body).map_err(|_| WireError::Malformed)?;
        if tail.is_empty() {
            Ok(env)
        } else {
            Err(WireError::Malformed)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starling_store::{NodeId, RegionId};

    fn env() -> Envelope {
        Envelope {
            from: Peer {
                node: NodeId::new(RegionId::from_name("us"), 1),
                region: "us".into(),
                addr: "127.0.0.1:1".into(),
                incarnation: 3,
            },
            msg: Message::AeWant {
                buckets: vec![1, 2, 3],
            },
        }
    }

    #[test]
    fn frames_round_trip() {
        let c = FrameCodec::new(b"secret");
        let f = c.seal(&env()).unwrap();
        let len = u32::from_be_bytes(f[..4].try_into().unwrap()) as usize;
        assert_eq!(len, f.len() - 4);
        assert_eq!(c.open(&f[4..]).unwrap(), env());
    }

    #[test]
    fn a_summary_at_the_exchange_cap_fits_a_frame() {
        let cap = crate::node::GossipConfig::wan(8).ae_max_summary;
        let mut e = env();
        e.msg = Message::AeSummary {
            buckets: vec![BucketSummary {
                bucket: 4095,
                entries: vec![(u64::MAX, u64::MAX); cap],
                complete: false,
            }],
        };
        let f = FrameCodec::new(b"secret").seal(&e).unwrap();
        assert!(f.len() <= MAX_FRAME, "{} bytes", f.len());
    }

    #[test]
    fn a_peer_without_the_secret_is_refused() {
        let f = FrameCodec::new(b"other").seal(&env()).unwrap();
        assert_eq!(
            FrameCodec::new(b"secret").open(&f[4..]),
            Err(WireError::Unauthenticated)
        );
    }

    #[test]
    fn damaged_frames_are_refused() {
        let c = FrameCodec::new(b"secret");
        let f = c.seal(&env()).unwrap();
        let mut flipped = f[4..].to_vec();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(c.open(&flipped), Err(WireError::Unauthenticated));
        let mut v2 = f[4..].to_vec();
        v2[0] = 2;
        assert_eq!(c.open(&v2), Err(WireError::Version(2)));
        assert_eq!(c.open(&f[4..10]), Err(WireError::Truncated));
        assert!(matches!(
            c.open(&vec![1u8; MAX_FRAME + 1]),
            Err(WireError::TooLarge(_))
        ));
    }
}
