//! One sender's order with several batches in flight.
//!
//! A WebSocket connection's lane used to run one batch at a time, so a send from a region that
//! is not the conversation's home waited for the previous batch's forward to come back across
//! the WAN (a round trip) before its own could leave. Now the lane starts a batch while earlier
//! ones are still in flight, and the order is kept where the claims run: each batch carries a
//! token, and a batch to a conversation names the token of the same connection's previous
//! batch to it ([`Order::after`]). The node that runs the claims (this one, or the home
//! region's owner for a forward — the same node for both batches, as they go to the same key's
//! owner) starts a batch's claims only once the batch it names has ended its claims here
//! ([`Messenger::batch_turn`]). Waiting is bounded ([`PIPELINE_WAIT`]); past it the batch is
//! answered `busy` (its sends are not stored), never claimed out of order.

use crate::Messenger;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a batch waits for the batch it follows to end its claims on this node. The two left
/// one connection moments apart by one path; the wait ends sooner when the earlier one ends.
pub const PIPELINE_WAIT: Duration = Duration::from_secs(2);

/// Ended batch tokens remembered on a node (the newest; about 2 MiB at most). A token is looked
/// up by the batch that follows it, which left the same connection moments after it: at 20 000
/// batches/s a token stays for about 3 s, and one forgotten early only makes its follower
/// answer `busy` after [`PIPELINE_WAIT`] (never claim out of order).
pub const ENDED_TOKENS: usize = 1 << 16;

/// Shards of [`EndedTokens`] (by token).
const ENDED_SHARDS: usize = 64;

/// The newest [`ENDED_TOKENS`] batch tokens that ended their claims here: sharded sets, each
/// forgetting its oldest first. (A shared `moka` cache cost a cache write per batch.)
#[derive(Debug)]
pub struct EndedTokens {
    shards: Box<[parking_lot::Mutex<EndedShard>]>,
}

#[derive(Debug, Default)]
struct EndedShard {
    set: std::collections::HashSet<u64>,
    order: std::collections::VecDeque<u64>,
}

impl Default for EndedTokens {
    fn default() -> Self {
        EndedTokens {
            shards: (0..ENDED_SHARDS)
                .map(|_| parking_lot::Mutex::default())
                .collect(),
        }
    }
}

impl EndedTokens {
    fn shard(&self, token: u64) -> &parking_lot::Mutex<EndedShard> {
        // Fibonacci hashing: ids from the generator differ mostly in their low bits.
        let i = (token.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58) as usize % ENDED_SHARDS;
        &self.shards[i]
    }

    /// Notes that batch `token` ended its claims.
    pub fn insert(&self, token: u64) {
        let mut s = self.shard(token).lock();
        if s.set.insert(token) {
            s.order.push_back(token);
            if s.order.len() > ENDED_TOKENS / ENDED_SHARDS
                && let Some(old) = s.order.pop_front()
            {
                s.set.remove(&old);
            }
        }
    }

    /// Whether batch `token` ended its claims (and is still remembered).
    pub fn contains(&self, token: u64) -> bool {
        self.shard(token).lock().set.contains(&token)
    }
}

/// Where a batch stands in its sender's pipeline. `token: 0` is a batch outside any pipeline
/// (REST, group changes): nothing waits for it and it waits for nothing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Names this batch (unique per node and time: an id from the node's generator).
    pub token: u64,
    /// The same connection's previous batch to this conversation, still in flight when this
    /// one started: its claims end on the claiming node before this batch's begin.
    pub after: Option<u64>,
}

/// Counters of pipelined batches, read by `/metrics`.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Batches that found the batch they follow still running (or not yet arrived) and waited.
    pub waited: AtomicU64,
    /// Batches answered `busy` because the batch they follow did not end within
    /// [`PIPELINE_WAIT`].
    pub timed_out: AtomicU64,
}

impl Messenger {
    /// A fresh batch token.
    pub fn batch_token(&self) -> u64 {
        self.ids.next_id().max(1)
    }

    /// The pipelining counters.
    pub fn pipeline_stats(&self) -> &PipelineStats {
        &self.pipeline
    }

    /// Waits until the batch `order` follows has ended its claims here: `false` if it did not
    /// within [`PIPELINE_WAIT`] (the caller must not claim).
    pub(crate) async fn batch_turn(&self, stripe: usize, order: Order) -> bool {
        let Some(after) = order.after else {
            return true;
        };
        if self.ended(after) {
            return true;
        }
        self.pipeline.waited.fetch_add(1, Ordering::Relaxed);
        let deadline = tokio::time::Instant::now() + PIPELINE_WAIT;
        loop {
            let notified = self.batch_done[stripe].notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.ended(after) {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let done = self.ended(after);
                if !done {
                    self.pipeline.timed_out.fetch_add(1, Ordering::Relaxed);
                }
                return done;
            }
        }
    }

    /// Records that the batch `order` names ended its claims here, and wakes its followers.
    pub(crate) fn batch_ended(&self, stripe: usize, order: Order) {
        if order.token != 0 {
            self.batches.insert(order.token);
            self.batch_done[stripe].notify_waiters();
        }
    }

    /// Whether batch `token` ended its claims here.
    fn ended(&self, token: u64) -> bool {
        self.batches.contains(token)
    }
}

/// Marks a batch ended when dropped: every way out of a claim, errors included, lets the next
/// batch go.
pub(crate) struct EndOnDrop<'a> {
    pub(crate) messenger: &'a Messenger,
    pub(crate) stripe: usize,
    pub(crate) order: Order,
}

impl Drop for EndOnDrop<'_> {
    fn drop(&mut self) {
        self.messenger.batch_ended(self.stripe, self.order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_tokens_keep_the_newest_and_forget_the_oldest() {
        let t = EndedTokens::default();
        assert!(!t.contains(0) && !t.contains(1));
        let n = ENDED_TOKENS as u64 * 2;
        for token in 1..=n {
            t.insert(token);
        }
        // The newest are all there; overall no more than the bound is kept.
        assert!((n - 1000..=n).all(|x| t.contains(x)));
        let kept = (1..=n).filter(|&x| t.contains(x)).count();
        assert!(kept <= ENDED_TOKENS, "kept {kept}");
        assert!(kept >= ENDED_TOKENS / 2, "kept {kept}");
        assert!(!t.contains(1));
        // A repeated end is one entry.
        t.insert(n);
        assert!(t.contains(n));
    }
}
