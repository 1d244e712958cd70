//! Reading the log: one message, a range after a seq (resume), a page before a seq, the head.

use crate::Messenger;
use crate::error::MessengerError;
use crate::keys;
use crate::model::{Conversation, Message};
use starling_store::{ScanRequest, StoreExt, codec};

impl Messenger {
    /// Message `seq` of `conv`, if stored here.
    pub async fn message(&self, conv: u64, seq: u64) -> Result<Option<Message>, MessengerError> {
        Ok(self
            .store
            .get_typed::<Message>(&keys::message(conv, seq))
            .await?
            .and_then(|v| v.value))
    }

    /// Up to `limit` stored messages with seq > `after`, ascending, from the retention floor
    /// ([`Messenger::floor`]) when `after` is below it. Stops before a seq this replica does
    /// not hold yet only if `contiguous` (the REST view); a resume takes what is there and lets
    /// the connection's cursor hold the part past a gap.
    pub async fn after(
        &self,
        conv: u64,
        after: u64,
        limit: usize,
        contiguous: bool,
    ) -> Result<Vec<Message>, MessengerError> {
        let limit = limit.clamp(1, 1000);
        // Entries below the floor are trimmed (one kept change entry may be left there).
        let after = after.max(self.floor(conv).await? - 1);
        let req = ScanRequest {
            prefix: keys::messages_prefix(conv),
            after: Some(keys::message(conv, after)),
            limit,
            reverse: true,
            include_tombstones: false,
        };
        let page = self.store.scan(&req).await?;
        let mut out = Vec::with_capacity(page.items.len());
        let mut expect = after + 1;
        for (_, v) in page.items {
            let Some(b) = v.value else { continue };
            let m: Message = codec::from_value(&b)?;
            if contiguous && m.seq != expect {
                break;
            }
            expect = m.seq + 1;
            out.push(m);
        }
        Ok(out)
    }

    /// Up to `limit` stored messages with seq < `before` (`None`: the newest), ascending; none
    /// below the retention floor ([`Messenger::floor`]).
    pub async fn before(
        &self,
        conv: u64,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<Message>, MessengerError> {
        let limit = limit.clamp(1, 1000);
        let req = ScanRequest {
            prefix: keys::messages_prefix(conv),
            after: before.map(|b| keys::message(conv, b)),
            limit,
            reverse: false,
            include_tombstones: false,
        };
        let page = self.store.scan(&req).await?;
        let floor = self.floor(conv).await?;
        let mut out = Vec::with_capacity(page.items.len());
        for (k, v) in page.items {
            if keys::parse_message(&k).is_some_and(|(_, seq)| seq < floor) {
                break;
            }
            if let Some(b) = v.value {
                out.push(codec::from_value::<Message>(&b)?);
            }
        }
        out.reverse();
        Ok(out)
    }

    /// The newest seq stored here (0: none).
    pub async fn last_seq(&self, conv: u64) -> Result<u64, MessengerError> {
        let page = self
            .store
            .scan(&ScanRequest::prefix(keys::messages_prefix(conv), 1))
            .await?;
        Ok(page
            .items
            .first()
            .and_then(|(k, _)| keys::parse_message(k))
            .map_or(0, |(_, s)| s))
    }
}

impl Messenger {
    /// Whether `user` may read entry `m` of `conv` (`conv` in any state at or after the one
    /// `m` was written under answers; an older one is brought up to date first).
    pub async fn visible(
        &self,
        user: u64,
        conv: &Conversation,
        m: &Message,
    ) -> Result<bool, MessengerError> {
        if conv.epoch >= m.epoch {
            return Ok(conv.may_read(user, m.seq));
        }
        Ok(self.state_for(m).await?.may_read(user, m.seq))
    }
}
