//! The wire format between nodes: encrypted, authenticated, versioned, size-capped frames.
//!
//! A frame is `len: u32 BE` (of what follows) ‖ `version: u8` ‖ the sealed `body`, where
//! `version` is the protocol version the sender speaks to this receiver and `body` is the
//! postcard encoding of an [`Envelope`]. How the body is sealed depends on the version:
//!
//! - from [`ENCRYPTED`] (4) on: `nonce: [u8; 24]` ‖ `ciphertext` ‖ `tag: [u8; 16]`,
//!   XChaCha20-Poly1305 with `version` as associated data, under a key derived from the cluster
//!   secret (HMAC-SHA256 of a fixed label). Frames cross regions over the public internet:
//!   nobody without the secret reads or forges them. Nonces are random (192 bits: no counter to
//!   keep across restarts, no collision in any realistic number of frames).
//! - before it: `tag: [u8; 32]` ‖ `body` in clear, `tag` being HMAC-SHA256 of
//!   `version ‖ body` under the cluster secret (authenticated, not encrypted).
//!
//! A frame over [`MAX_FRAME`], of a version this node does not accept, that does not
//! authenticate, or whose body does not decode is refused with a [`WireError`]; the transport
//! closes that connection and nothing else.
//!
//! **Versions and rolling upgrades.** A node speaks [`PROTOCOL_VERSION`] and accepts frames of
//! the versions next to it ([`FrameCodec::accepts`]: one below, its own, one above), so a
//! cluster is upgraded one node at a time. It speaks to each peer the lower of the two versions:
//! to a peer it has not heard from yet the oldest one it accepts, and once a peer's frame
//! arrives, `min(ours, theirs)` ([`FrameCodec::seal_for`]). The rule a new version keeps: it may
//! add messages only at the end of [`Message`] (postcard numbers variants in order), and sends
//! them only to peers heard speaking it.
//!
//! - Version 1: the messages up to [`Message::FetchRequest`] and [`Message::FetchResponse`];
//!   a node accepted its own version only.
//! - Version 2: the same messages; a node accepts the adjacent versions and speaks each peer's.
//! - Version 3: a version-2 frame (HMAC, in clear) from a build that can encrypt: how a node
//!   in [`Encryption::Optional`] announces itself, so two upgraded nodes move to version 4.
//! - Version 4 ([`ENCRYPTED`]): the same messages, encrypted.
//!
//! **Encryption.** A node speaks version 4, and by default ([`Encryption::Required`]) every
//! frame it sends is encrypted and it refuses builds before encryption (versions 1 and 2). A
//! cluster of version-2 builds is upgraded in two rolls: first to this build with
//! [`Encryption::Optional`] (it accepts every version from 1, speaks 4 to a peer heard at 3 or 4
//! and otherwise announces itself at 3, in clear, which a version-2 build reads), then once
//! more with the default. During the second roll a node still takes those
//! announcements (authenticated, in clear) from nodes of the first; after it, no frame is in
//! clear. The speaking rule above holds with two amendments for a build that encrypts: it
//! counts a peer heard at 3 as speaking 4, and it never speaks below 3.

use crate::peer::Peer;
use crate::reconcile::BucketSummary;
use bytes::{BufMut, Bytes, BytesMut};
use chacha20poly1305::aead::{AeadInOut, Generate as _};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, KeyInit, Mac};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use starling_store::{Delta, Key, VersionVector};
use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Arc;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u8 = 4;
/// The first version whose frames are encrypted.
pub const ENCRYPTED: u8 = 4;
/// The version a build that can encrypt sends in clear to announce itself (see the module
/// documentation): a peer heard at it is spoken to at [`ENCRYPTED`].
const ANNOUNCE: u8 = 3;
/// The oldest version an [`Encryption::Optional`] node accepts: what the build before
/// encryption (version 2) speaks to a peer it has heard at 1 or not at all.
const OLDEST_UPGRADABLE: u8 = 1;
/// What a frame's body is encrypted under, derived from the cluster secret.
const KEY_LABEL: &[u8] = b"starling gossip frame encryption key, protocol 4";
const NONCE: usize = 24;
const AEAD_TAG: usize = 16;
/// The first version: what a frame of a peer not yet heard from is sealed at.
pub const WIRE_VERSION: u8 = 1;
/// Most peers whose version a codec remembers (a cluster has far fewer; past it, peers not yet
/// remembered are spoken to at the oldest accepted version, which they accept too).
const MAX_PEERS: usize = 4096;
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
    /// A protocol version this node does not accept (see [`FrameCodec::accepts`]).
    #[error("gossip protocol version {0} is not one this node accepts")]
    Version(u8),
    /// The tag does not match: the sender does not have the cluster secret (or the frame was
    /// altered on the way).
    #[error("frame not authenticated by the cluster secret")]
    Unauthenticated,
    /// The operating system gave no random nonce to seal a frame with.
    #[error("no randomness for a frame's nonce")]
    Entropy,
    /// Authenticated but undecodable.
    #[error("malformed frame body")]
    Malformed,
}

/// Whether a node still talks in clear to nodes that cannot encrypt (see the module
/// documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Encryption {
    /// Every frame sent is encrypted; builds before encryption are refused (the announcements
    /// of nodes in [`Encryption::Optional`] are still taken). The default.
    #[default]
    Required,
    /// For the first roll of an upgrade from a build before encryption: frames to and from
    /// such peers are authenticated but in clear; frames between nodes that can encrypt are
    /// encrypted.
    Optional,
}

/// Seals and opens frames under one cluster secret, for one node: it remembers the version
/// each peer speaks (clones share that memory).
#[derive(Clone)]
pub struct FrameCodec {
    mac: Hmac<Sha256>,
    aead: XChaCha20Poly1305,
    speaks: u8,
    accepts: RangeInclusive<u8>,
    /// The version each peer (by address) was last heard speaking, and the incarnation it
    /// spoke it in.
    heard: Arc<Mutex<HashMap<String, (u64, u8)>>>,
}

// What a panic could leave half-done in the shared map is one peer's version, which the next
// frame from that peer sets again: a codec stays usable across a caught panic.
impl std::panic::UnwindSafe for FrameCodec {}
impl std::panic::RefUnwindSafe for FrameCodec {}

impl std::fmt::Debug for FrameCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameCodec")
            .field("speaks", &self.speaks)
            .field("accepts", &self.accepts)
            .finish_non_exhaustive()
    }
}

impl FrameCodec {
    /// A codec for a cluster secret (any length; HMAC hashes long keys), speaking
    /// [`PROTOCOL_VERSION`], encrypted, and accepting it and the version after it
    /// ([`Encryption::Required`]).
    pub fn new(secret: &[u8]) -> Self {
        Self::with_encryption(secret, Encryption::Required)
    }

    /// [`FrameCodec::new`] with the given [`Encryption`] mode.
    pub fn with_encryption(secret: &[u8], mode: Encryption) -> Self {
        let v = PROTOCOL_VERSION;
        let oldest = match mode {
            Encryption::Required => ANNOUNCE,
            Encryption::Optional => OLDEST_UPGRADABLE,
        };
        Self::with_versions(secret, v, oldest..=v.saturating_add(1))
    }

    /// A codec speaking `speaks` at most and accepting `accepts` (simulations of rolling
    /// upgrades; `with_versions(s, 1, 1..=1)` is a version-1 build).
    pub fn with_versions(secret: &[u8], speaks: u8, accepts: RangeInclusive<u8>) -> Self {
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        let mut kdf = mac.clone();
        kdf.update(KEY_LABEL);
        let key: [u8; 32] = kdf.finalize().into_bytes().into();
        FrameCodec {
            mac,
            aead: XChaCha20Poly1305::new(&key.into()),
            speaks,
            accepts,
            heard: Arc::default(),
        }
    }

    /// The protocol version this codec speaks at most.
    pub fn speaks(&self) -> u8 {
        self.speaks
    }

    /// The versions of the frames it opens.
    pub fn accepts(&self) -> RangeInclusive<u8> {
        self.accepts.clone()
    }

    /// The version spoken to `peer`: the lower of ours and the one it was last heard speaking,
    /// or the oldest we accept before it is heard — or since it restarted (a newer incarnation
    /// than the one heard; a peer known by address only, incarnation 0, is taken as heard).
    ///
    /// A build that encrypts never speaks below [`ANNOUNCE`]: to a peer heard at it or above it
    /// speaks [`ENCRYPTED`] (or later); to any other peer, if it takes frames in clear
    /// ([`Encryption::Optional`]), the announcement, which a version-2 build reads; otherwise
    /// [`ENCRYPTED`].
    pub fn version_for(&self, peer: &Peer) -> u8 {
        let heard = match self.heard.lock().get(&peer.addr) {
            Some(&(incarnation, theirs)) if peer.incarnation <= incarnation => Some(theirs),
            _ => None,
        };
        let oldest = *self.accepts.start();
        if self.speaks < ENCRYPTED {
            return heard.map_or(oldest, |theirs| theirs.min(self.speaks));
        }
        match heard {
            Some(theirs) if theirs >= ANNOUNCE => theirs.min(self.speaks).max(ENCRYPTED),
            _ if oldest < ANNOUNCE => ANNOUNCE,
            _ => oldest.max(ENCRYPTED),
        }
    }

    /// Encodes an envelope as a whole frame, length prefix included, at the version this codec
    /// speaks.
    pub fn seal(&self, env: &Envelope) -> Result<Bytes, WireError> {
        self.seal_at(env, self.speaks)
    }

    /// Encodes an envelope for `peer`, at [`FrameCodec::version_for`] it.
    pub fn seal_for(&self, peer: &Peer, env: &Envelope) -> Result<Bytes, WireError> {
        self.seal_at(env, self.version_for(peer))
    }

    fn seal_at(&self, env: &Envelope, version: u8) -> Result<Bytes, WireError> {
        let mut body = postcard::to_allocvec(env).map_err(|_| WireError::Malformed)?;
        if version >= ENCRYPTED {
            let len = 1 + NONCE + body.len() + AEAD_TAG;
            if len > MAX_FRAME {
                return Err(WireError::TooLarge(len));
            }
            // The OS's generator failing is as fatal as any I/O error: refuse to send.
            let nonce = XNonce::try_generate().map_err(|_| WireError::Entropy)?;
            let tag = self
                .aead
                .encrypt_inout_detached(&nonce, &[version], body.as_mut_slice().into())
                .map_err(|_| WireError::TooLarge(len))?;
            let mut out = BytesMut::with_capacity(4 + len);
            out.put_u32(len as u32);
            out.put_u8(version);
            out.put_slice(&nonce);
            out.put_slice(&body);
            out.put_slice(&tag);
            return Ok(out.freeze());
        }
        let len = 1 + TAG + body.len();
        if len > MAX_FRAME {
            return Err(WireError::TooLarge(len));
        }
        let mut mac = self.mac.clone();
        mac.update(&[version]);
        mac.update(&body);
        let tag = mac.finalize().into_bytes();
        let mut out = BytesMut::with_capacity(4 + len);
        out.put_u32(len as u32);
        out.put_u8(version);
        out.put_slice(&tag);
        out.put_slice(&body);
        Ok(out.freeze())
    }

    /// Decodes the part of a frame after its length prefix, and remembers the version its
    /// sender speaks.
    pub fn open(&self, frame: &[u8]) -> Result<Envelope, WireError> {
        if frame.len() > MAX_FRAME {
            return Err(WireError::TooLarge(frame.len()));
        }
        let Some((&version, rest)) = frame.split_first() else {
            return Err(WireError::Truncated);
        };
        if !self.accepts.contains(&version) {
            return Err(WireError::Version(version));
        }
        let decrypted;
        let body = if version >= ENCRYPTED {
            if rest.len() < NONCE + AEAD_TAG {
                return Err(WireError::Truncated);
            }
            let (nonce, sealed) = rest.split_at(NONCE);
            let (ciphertext, tag) = sealed.split_at(sealed.len() - AEAD_TAG);
            let nonce = XNonce::try_from(nonce).map_err(|_| WireError::Truncated)?;
            let tag = chacha20poly1305::Tag::try_from(tag).map_err(|_| WireError::Truncated)?;
            let mut plain = ciphertext.to_vec();
            self.aead
                .decrypt_inout_detached(&nonce, &[version], plain.as_mut_slice().into(), &tag)
                .map_err(|_| WireError::Unauthenticated)?;
            decrypted = plain;
            &decrypted[..]
        } else {
            if rest.len() < TAG {
                return Err(WireError::Truncated);
            }
            let (tag, body) = rest.split_at(TAG);
            let mut mac = self.mac.clone();
            mac.update(&[version]);
            mac.update(body);
            mac.verify_slice(tag)
                .map_err(|_| WireError::Unauthenticated)?;
            body
        };
        let (env, tail) =
            postcard::take_from_bytes::<Envelope>(body).map_err(|_| WireError::Malformed)?;
        if !tail.is_empty() {
            return Err(WireError::Malformed);
        }
        let mut heard = self.heard.lock();
        if heard.len() < MAX_PEERS || heard.contains_key(&env.from.addr) {
            heard.insert(env.from.addr.clone(), (env.from.incarnation, version));
        }
        Ok(env)
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
    fn adjacent_versions_are_accepted_and_each_peer_is_spoken_its_own() {
        // The rule among builds before encryption: a version-2 build between 1 and 3.
        let new = FrameCodec::with_versions(b"secret", 2, 1..=3);
        let old = FrameCodec::with_versions(b"secret", 1, 1..=1);
        let next = FrameCodec::with_versions(b"secret", 3, 2..=4);
        // Before hearing from a peer, the oldest accepted version: a version-1 build opens it.
        let addr = &env().from;
        assert_eq!(new.version_for(addr), 1);
        assert_eq!(
            old.open(&new.seal_for(addr, &env()).unwrap()[4..]),
            Ok(env())
        );
        // Heard at 1: still 1. Heard at 3: ours, 2.
        assert_eq!(new.open(&old.seal(&env()).unwrap()[4..]), Ok(env()));
        assert_eq!(new.version_for(addr), 1);
        assert_eq!(new.open(&next.seal(&env()).unwrap()[4..]), Ok(env()));
        assert_eq!(new.version_for(addr), 2);
        assert_eq!(
            next.open(&new.seal_for(addr, &env()).unwrap()[4..]),
            Ok(env())
        );
        // Two versions apart: refused both ways.
        assert_eq!(
            old.open(&next.seal(&env()).unwrap()[4..]),
            Err(WireError::Version(3))
        );
        let far = FrameCodec::with_versions(b"secret", 4, 4..=4);
        assert_eq!(
            new.open(&far.seal(&env()).unwrap()[4..]),
            Err(WireError::Version(4))
        );
    }

    #[test]
    fn frames_are_encrypted_by_default() {
        let c = FrameCodec::new(b"secret");
        assert_eq!(
            (c.speaks(), c.accepts()),
            (ENCRYPTED, ANNOUNCE..=ENCRYPTED + 1)
        );
        assert_eq!(c.version_for(&env().from), ENCRYPTED);
        let f = c.seal(&env()).unwrap();
        assert_eq!(f[4], ENCRYPTED);
        // Nothing of the envelope is in clear (the sender's address is in it).
        let addr = env().from.addr.into_bytes();
        assert!(!f.windows(addr.len()).any(|w| w == addr.as_slice()));
        assert_eq!(c.open(&f[4..]), Ok(env()));
        // Two seals of one envelope differ (a fresh nonce each).
        assert_ne!(f, c.seal(&env()).unwrap());
        // The wrong secret, a flipped bit anywhere, a cut frame: refused.
        assert_eq!(
            FrameCodec::new(b"other").open(&f[4..]),
            Err(WireError::Unauthenticated)
        );
        for at in [5, 5 + NONCE, f.len() - 1] {
            let mut bad = f[4..].to_vec();
            bad[at - 4] ^= 0x10;
            assert_eq!(c.open(&bad), Err(WireError::Unauthenticated), "bit at {at}");
        }
        assert_eq!(c.open(&f[4..4 + NONCE]), Err(WireError::Truncated));
        // The version is authenticated too: an encrypted frame relabelled is refused.
        let mut relabelled = f[4..].to_vec();
        relabelled[0] = ENCRYPTED + 1;
        assert_eq!(c.open(&relabelled), Err(WireError::Unauthenticated));
    }

    #[test]
    fn an_upgrade_to_encryption_goes_through_optional_then_required() {
        let addr = &env().from;
        let v2 = || FrameCodec::with_versions(b"secret", 2, 1..=3);
        let optional = || FrameCodec::with_encryption(b"secret", Encryption::Optional);
        let required = || FrameCodec::new(b"secret");
        // An optional node announces itself in clear at 3, which a version-2 build reads; it
        // answers at 2, and the optional node keeps announcing itself to it.
        let (old, opt) = (v2(), optional());
        assert_eq!(opt.accepts(), 1..=ENCRYPTED + 1);
        let hello = opt.seal_for(addr, &env()).unwrap();
        assert_eq!(hello[4], ANNOUNCE);
        assert_eq!(old.open(&hello[4..]), Ok(env()));
        assert_eq!(old.version_for(addr), 2);
        assert_eq!(
            opt.open(&old.seal_for(addr, &env()).unwrap()[4..]),
            Ok(env())
        );
        assert_eq!(opt.version_for(addr), ANNOUNCE);
        // Two optional nodes: the announcement moves them to encrypted frames.
        let (a, b) = (optional(), optional());
        assert_eq!(b.open(&a.seal_for(addr, &env()).unwrap()[4..]), Ok(env()));
        assert_eq!(b.version_for(addr), ENCRYPTED);
        let reply = b.seal_for(addr, &env()).unwrap();
        assert_eq!(reply[4], ENCRYPTED);
        assert_eq!(a.open(&reply[4..]), Ok(env()));
        assert_eq!(a.version_for(addr), ENCRYPTED);
        // Once the peer restarts (a newer incarnation), what was heard of it no longer holds:
        // announce again, whatever it was heard speaking.
        let restarted = Peer {
            incarnation: addr.incarnation + 1,
            ..addr.clone()
        };
        assert_eq!(a.version_for(&restarted), ANNOUNCE);
        assert_eq!(b.version_for(&restarted), ANNOUNCE);
        // A required node and an optional one understand each other, encrypted.
        let req = required();
        assert_eq!(a.open(&req.seal_for(addr, &env()).unwrap()[4..]), Ok(env()));
        assert_eq!(req.open(&reply[4..]), Ok(env()));
        // A required node takes an optional node's announcement (and answers it encrypted), but
        // refuses a build before encryption, which refuses its frames too.
        assert_eq!(req.open(&hello[4..]), Ok(env()));
        assert_eq!(req.version_for(addr), ENCRYPTED);
        assert_eq!(
            req.open(&v2().seal(&env()).unwrap()[4..]),
            Err(WireError::Version(2))
        );
        assert_eq!(
            v2().open(&req.seal(&env()).unwrap()[4..]),
            Err(WireError::Version(ENCRYPTED))
        );
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
        let mut v9 = f[4..].to_vec();
        v9[0] = 9;
        assert_eq!(c.open(&v9), Err(WireError::Version(9)));
        assert_eq!(c.open(&f[4..10]), Err(WireError::Truncated));
        assert!(matches!(
            c.open(&vec![1u8; MAX_FRAME + 1]),
            Err(WireError::TooLarge(_))
        ));
    }
}
