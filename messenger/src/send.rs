//! Sending: gap-free sequence numbers by CAS, idempotent by client id.
//!
//! The protocol (ARCHITECTURE.md, "Messenger", says why each step is there):
//! 1. Look up the client-id index `mc/conv/sender/client_id`: present → the original message.
//! 2. Read the local head (the newest stored seq) and search the newest `dedup_window` stored
//!    messages for (sender, client id): found → the original (this closes the crash window
//!    between step 3 and 4 for retries that reach a replica holding the message).
//! 3. Claim slot `head + 1` by CAS-creating `mm/conv/bucket/seq` at the owner of that key in the
//!    home region, with the *whole message* as the value. The slot is the message: there is
//!    no counter to advance, so no crash can leave a claimed seq without a message (no gap) and
//!    a slot is only ever attempted when the one below it is known to exist (no hole). A
//!    conflict answers the slot's current message: ours (same sender and client id — a
//!    concurrent retry won) → the original; another → try the next slot.
//! 4. Write the client-id index (a plain replicated put; losing it to a crash is step 2's case).
//!
//! A send that arrives in another region than the conversation's home is *forwarded*: after
//! step 1 (a local read), steps 2–4 run on a node of the home region ([`SEND_SERVICE`], served
//! by [`SendHandler`] through the cluster's call routing), whose replica is at most an
//! in-region push behind the slots' owners. So the send crosses the WAN once, where claiming
//! slot by slot from the lagging foreign replica cost a round trip per slot it had not seen
//! yet, and a busy conversation can gain slots faster than that walk advances.

use crate::error::MessengerError;
use crate::keys;
use crate::model::{Conversation, Message, MessageHead};
use crate::{Messenger, now_ms};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use starling_store::{
    CallHandler, CasOutcome, ScanRequest, StoreError, StoreExt, VersionVector, codec,
};

/// Longest message body, in characters.
pub const MAX_BODY: usize = 4000;
/// Longest client id, in bytes.
pub const MAX_CLIENT_ID: usize = 64;
/// Slots tried before giving up on a very busy conversation.
const MAX_ATTEMPTS: usize = 10_000;

/// The call service of a send forwarded to its conversation's home region.
pub const SEND_SERVICE: &str = "chat.send";

/// The outcome of a send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    /// The stored message (the original one for a retry).
    pub message: Message,
    /// Whether this call stored it (`false`: a retry answered with the original).
    pub new: bool,
    /// The slot's version when this call stored it (to wait for K-region durability).
    pub version: Option<VersionVector>,
}

/// A send forwarded to the home region: everything the claim needs, the conversation included
/// (it may not have replicated there yet).
#[derive(Serialize, Deserialize)]
struct Forwarded {
    conv: Conversation,
    sender: u64,
    client_id: String,
    body: String,
}

/// The home region's answer to a [`Forwarded`] send.
#[derive(Serialize, Deserialize)]
enum ForwardReply {
    Sent(Sent),
    Contended,
    Unreachable(String),
    Failed(String),
}

/// Checks a body and a client id.
pub fn validate(body: &str, client_id: &str) -> Result<(), MessengerError> {
    let n = body.chars().count();
    if n == 0 || n > MAX_BODY || body.trim().is_empty() {
        return Err(MessengerError::Invalid(
            "body is 1 to 4000 characters, not only spaces",
        ));
    }
    if client_id.is_empty() || client_id.len() > MAX_CLIENT_ID {
        return Err(MessengerError::Invalid("client_id is 1 to 64 bytes"));
    }
    if body.contains('\0') || client_id.contains('\0') {
        return Err(MessengerError::Invalid("NUL is not allowed"));
    }
    Ok(())
}

impl Messenger {
    /// Sends `body` from `sender` to `conv` (the caller authorized it). A retry with the same
    /// client id returns the original message and stores nothing.
    pub async fn send(
        &self,
        conv: &crate::Conversation,
        sender: u64,
        client_id: &str,
        body: &str,
    ) -> Result<Sent, MessengerError> {
        validate(body, client_id)?;
        let idx = keys::client_id(conv.id, sender, client_id);
        if let Some(sent) = self.original(conv.id, &idx).await? {
            return Ok(sent);
        }
        match self.cas.local_region() {
            Some(here) if here != conv.home_region => {
                self.forward(conv, sender, client_id, body).await
            }
            _ => self.claim(conv, sender, client_id, body).await,
        }
    }

    /// Step 1: the message already stored under this client id, if the index here has it.
    async fn original(
        &self,
        conv: u64,
        idx: &starling_store::Key,
    ) -> Result<Option<Sent>, MessengerError> {
        if let Some(seq) = self.indexed(idx).await?
            && let Some(m) = self.message(conv, seq).await?
        {
            return Ok(Some(Sent {
                message: m,
                new: false,
                version: None,
            }));
        }
        Ok(None)
    }

    /// Steps 2–4 run by a node of the home region, through the cluster's call routing (to the
    /// owner of the conversation's key there).
    async fn forward(
        &self,
        conv: &Conversation,
        sender: u64,
        client_id: &str,
        body: &str,
    ) -> Result<Sent, MessengerError> {
        let req = Forwarded {
            conv: conv.clone(),
            sender,
            client_id: client_id.to_string(),
            body: body.to_string(),
        };
        let answer = self
            .cas
            .call_at(
                &conv.home_region,
                &keys::conversation(conv.id),
                SEND_SERVICE,
                codec::to_value(&req)?,
            )
            .await?;
        match codec::from_value::<ForwardReply>(&answer)? {
            ForwardReply::Sent(sent) => Ok(sent),
            ForwardReply::Contended => Err(MessengerError::Contended),
            ForwardReply::Unreachable(region) => {
                Err(StoreError::OwnerUnreachable { region }.into())
            }
            ForwardReply::Failed(reason) => Err(StoreError::Remote(reason).into()),
        }
    }

    /// Steps 2–4 (step 1 was done by the caller): claims the next slot from this replica's
    /// head in the home region.
    async fn claim(
        &self,
        conv: &Conversation,
        sender: u64,
        client_id: &str,
        body: &str,
    ) -> Result<Sent, MessengerError> {
        let idx = keys::client_id(conv.id, sender, client_id);
        // Fibonacci hashing: the top bits of id × 2^64/φ, well spread whatever the id's layout.
        let stripe =
            (conv.id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % crate::CLAIM_STRIPES;
        let _turn = self.claims[stripe].lock().await;
        let (head, found) = self.search_tail(conv.id, sender, client_id).await?;
        if let Some(m) = found {
            self.index(&idx, m.seq).await?;
            return Ok(Sent {
                message: m,
                new: false,
                version: None,
            });
        }
        let mut seq = head + 1;
        for _ in 0..MAX_ATTEMPTS {
            let msg = Message {
                sender,
                client_id: client_id.to_string(),
                conv: conv.id,
                seq,
                id: self.ids.next_id(),
                body: body.to_string(),
                sent_at_ms: now_ms(),
            };
            let value = codec::to_value(&msg)?;
            let key = keys::message(conv.id, seq);
            match self
                .cas
                .cas_at(&conv.home_region, &key, None, Some(value))
                .await?
            {
                CasOutcome::Applied(v) => {
                    self.index(&idx, seq).await?;
                    return Ok(Sent {
                        message: msg,
                        new: true,
                        version: Some(v.version),
                    });
                }
                CasOutcome::Conflict(Some(v)) => {
                    if let Some(b) = v.value {
                        let other: Message = codec::from_value(&b)?;
                        if other.sender == sender && other.client_id == client_id {
                            self.index(&idx, seq).await?;
                            return Ok(Sent {
                                message: other,
                                new: false,
                                version: None,
                            });
                        }
                    }
                    seq += 1;
                }
                CasOutcome::Conflict(None) => seq += 1,
            }
        }
        Err(MessengerError::Contended)
    }

    /// The handler of [`SEND_SERVICE`] for this node (register it with the cluster's router).
    pub fn send_handler(&self) -> SendHandler {
        SendHandler(self.clone())
    }

    async fn indexed(&self, idx: &starling_store::Key) -> Result<Option<u64>, MessengerError> {
        Ok(self
            .store
            .get(idx)
            .await?
            .and_then(|v| v.value)
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map(u64::from_be_bytes))
    }

    async fn index(&self, idx: &starling_store::Key, seq: u64) -> Result<(), MessengerError> {
        self.store
            .put(idx, Bytes::copy_from_slice(&seq.to_be_bytes()))
            .await?;
        Ok(())
    }

    /// The newest stored seq here (0: none) and, among the newest `dedup_window` messages, the
    /// one from `sender` with `client_id`, if any.
    async fn search_tail(
        &self,
        conv: u64,
        sender: u64,
        client_id: &str,
    ) -> Result<(u64, Option<Message>), MessengerError> {
        let window = self.cfg.dedup_window.max(1);
        let page = self
            .store
            .scan(&ScanRequest::prefix(keys::messages_prefix(conv), window))
            .await?;
        let mut head = 0;
        for (k, v) in &page.items {
            let Some((_, seq)) = keys::parse_message(k) else {
                continue;
            };
            head = head.max(seq);
            let Some(b) = &v.value else { continue };
            if let Ok((h, _)) = postcard::take_from_bytes::<MessageHead>(b)
                && h.sender == sender
                && h.client_id == client_id
            {
                return Ok((head, Some(codec::from_value(b)?)));
            }
        }
        Ok((head, None))
    }
}

/// Serves sends forwarded from other regions: runs the claim (steps 2–4) here, in the
/// conversation's home region. The caller authorized the sender and validated the input where
/// the request arrived; the input is checked again (a peer holds the cluster secret, but a bug
/// there must not store what a client could not).
#[derive(Clone, Debug)]
pub struct SendHandler(Messenger);

#[async_trait::async_trait]
impl CallHandler for SendHandler {
    async fn handle(&self, body: Bytes) -> Result<Bytes, String> {
        let req: Forwarded =
            codec::from_value(&body).map_err(|e| format!("malformed forwarded send: {e}"))?;
        let reply = match validate(&req.body, &req.client_id) {
            Err(e) => ForwardReply::Failed(e.to_string()),
            Ok(()) => match self
                .0
                .claim(&req.conv, req.sender, &req.client_id, &req.body)
                .await
            {
                Ok(sent) => ForwardReply::Sent(sent),
                Err(MessengerError::Contended) => ForwardReply::Contended,
                Err(MessengerError::Store(StoreError::OwnerUnreachable { region })) => {
                    ForwardReply::Unreachable(region)
                }
                Err(e) => ForwardReply::Failed(e.to_string()),
            },
        };
        codec::to_value(&reply).map_err(|e| e.to_string())
    }
}
