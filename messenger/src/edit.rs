//! Editing and deleting messages. The seq stays: the message's slot is rewritten in place (by
//! CAS at its owner in the home region, from the version read there), then an `edit` or
//! `delete` entry is appended to the log with its own seq, so connections get the change live
//! and on resume in log order, and a retry with the same client id stops at the entry (the
//! slot is rewritten first: a crash between the two leaves a retry that rewrites the same text
//! again and appends the entry).

use crate::error::MessengerError;
use crate::keys;
use crate::model::{Conversation, ConversationKind, Message, MessageKind, Role};
use crate::send::{Draft, Item, Sent, validate, validate_client_id};
use crate::{Messenger, now_ms};
use starling_store::{CasOutcome, codec};

/// Rewrites of one slot tried before giving up (each loses only to another rewrite).
const MAX_REWRITES: usize = 16;

impl Messenger {
    /// Edits message `seq` of `conv` to `body`: its sender only, a text message not deleted.
    pub async fn edit(
        &self,
        conv: &Conversation,
        actor: u64,
        seq: u64,
        body: &str,
        client_id: &str,
    ) -> Result<Sent, MessengerError> {
        validate(body, client_id)?;
        let draft = Draft::Edit {
            target_seq: seq,
            body: body.to_string(),
        };
        self.rewrite_then_append(conv, actor, seq, client_id, draft, |m| {
            if m.sender != actor {
                return Err(MessengerError::ForbiddenMsg(
                    "only its sender edits a message".into(),
                ));
            }
            if m.deleted {
                return Err(MessengerError::ConflictMsg(
                    "the message was deleted".into(),
                ));
            }
            m.body = body.to_string();
            m.edited_at_ms = Some(now_ms());
            Ok(())
        })
        .await
    }

    /// Deletes message `seq` of `conv`: its sender, or a group's owner or admin. Deleting a
    /// deleted message changes nothing in it (the entry is still appended once per client id).
    pub async fn delete_message(
        &self,
        conv: &Conversation,
        actor: u64,
        seq: u64,
        client_id: &str,
    ) -> Result<Sent, MessengerError> {
        validate_client_id(client_id)?;
        let moderator = conv.kind == ConversationKind::Group
            && conv.role(actor).is_some_and(|r| r >= Role::Admin);
        let draft = Draft::Delete { target_seq: seq };
        self.rewrite_then_append(conv, actor, seq, client_id, draft, |m| {
            if m.sender != actor && !moderator {
                return Err(MessengerError::ForbiddenMsg(
                    "only its sender or a group's owner and admins delete a message".into(),
                ));
            }
            m.body.clear();
            m.deleted = true;
            Ok(())
        })
        .await
    }

    async fn rewrite_then_append(
        &self,
        conv: &Conversation,
        actor: u64,
        seq: u64,
        client_id: &str,
        draft: Draft,
        change: impl Fn(&mut Message) -> Result<(), MessengerError>,
    ) -> Result<Sent, MessengerError> {
        // A retry of a finished edit answers the entry without rewriting the slot again (a
        // later edit may have changed it since).
        let idx = keys::client_id(conv.id, actor, client_id);
        if let Some(sent) = self.original(conv.id, &idx).await? {
            return Ok(sent);
        }
        if !conv.may_read(actor, seq) {
            return Err(MessengerError::MessageNotFound);
        }
        let floor = self.floor(conv.id).await?;
        if seq < floor {
            return Err(MessengerError::Trimmed(floor));
        }
        let key = keys::message(conv.id, seq);
        let mut done = false;
        for _ in 0..MAX_REWRITES {
            let Some((bytes, version)) = self.read_at_owner(&conv.home_region, &key).await? else {
                // Trimmed meanwhile, or never there.
                let floor = self.floor(conv.id).await?;
                if seq < floor {
                    return Err(MessengerError::Trimmed(floor));
                }
                return Err(MessengerError::MessageNotFound);
            };
            // The slot keeps the fencing token it was created under.
            let (mut m, epoch) = crate::lease::decode_slot(&bytes)?;
            if m.kind != MessageKind::Text {
                return Err(MessengerError::Invalid(
                    "only text messages are edited or deleted",
                ));
            }
            let before = m.clone();
            change(&mut m)?;
            if m.deleted && before.deleted {
                done = true;
                break;
            }
            let value = match epoch {
                0 => codec::to_value(&m)?,
                e => crate::lease::encode_slot(&m, e)?,
            };
            if let CasOutcome::Applied(_) = self
                .cas
                .cas_at(&conv.home_region, &key, Some(&version), Some(value))
                .await?
            {
                self.heads.invalidate(&conv.id);
                done = true;
                break;
            }
        }
        if !done {
            return Err(MessengerError::Contended);
        }
        let item = Item {
            client_id: client_id.to_string(),
            draft,
        };
        match self.append(conv, actor, vec![item]).await.pop() {
            Some(Ok(Some(sent))) => Ok(sent),
            Some(Ok(None)) | None => Err(MessengerError::Contended),
            Some(Err(e)) => Err(e),
        }
    }
}

/// A client id for an edit whose client gave none: unique, so such an edit is not deduplicated
/// (a client that retries gives its own).
pub fn fresh_client_id(m: &Messenger) -> String {
    format!("edit-{}", m.ids.next_id())
}

/// The client id of a delete whose client gave none: deleting one message twice is one delete.
pub fn delete_client_id(seq: u64) -> String {
    format!("delete-{seq}")
}
