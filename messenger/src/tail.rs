//! Turns log entries that arrive in this node's store — replicated from the home region's owner,
//! or CAS'd here for a sender on another node — into deliveries to this node's connections.
//! Starts at the feed's end (a client that missed something resumes); duplicates of what the
//! sender's node already delivered are dropped by each connection's cursor. Also: a
//! conversation record that changed refreshes the node's cache, and a read marker replicated
//! from another region reaches the members connected here (the user's other devices).

use crate::fanout::Fanout;
use crate::keys;
use starling_store::Store;
use starling_store::consumer::{Tail, Wake};
use std::sync::Arc;
use tokio::sync::watch;

/// The tail's position in the change feed, saved (at most every [`SAVE_EVERY`]) so that the
/// feed's trimmer (`starling_store::trim`) does not pass it. A restart still starts at the end.
pub const CONSUMER: &str = "messenger-tail";

/// The keyspaces whose changes the tail reads ([`handle`]): conversations, read markers,
/// messages.
const READS: &[starling_store::Keyspace] = &[keys::CONVERSATIONS, keys::READ, keys::MESSAGES];

/// How often the tail saves its position, at most.
const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs until `shutdown` turns true.
pub async fn run(fanout: Fanout, store: Arc<dyn Store>, shutdown: watch::Receiver<bool>) {
    let cursor = starling_store::FeedConsumer::new(store.clone(), CONSUMER);
    let mut saved: Option<(u64, tokio::time::Instant)> = None;
    // A burst of arrivals is one read of the feed (see `starling_store::consumer::LINGER`;
    // shorter here: this is the delivery path of replicated messages).
    // Woken by the messenger's keys only (not by posts, likes or follows).
    let mut tail = Tail::new(
        store,
        "messenger tail",
        Wake::On(READS),
        TAIL_LINGER,
        shutdown,
    );
    while tail.wait().await {
        let pos = tail.position();
        if saved.is_none_or(|(at, when)| at != pos && when.elapsed() >= SAVE_EVERY) {
            match cursor.commit(pos).await {
                Ok(()) => saved = Some((pos, tokio::time::Instant::now())),
                Err(e) => tracing::warn!(error = %e, "messenger tail: saving the position failed"),
            }
        }
        handle(&fanout, &tail.read().await).await;
    }
}

/// Delivers what `changes` bring to this node's connections (messages, read markers) and
/// reloads the conversations they change: this node's own feed, through [`run`], or the keys
/// the region's other nodes wrote on a shared ScyllaDB keyspace, through the node's broadcast
/// reader of the keyspace feed (as `Origin::Remote`: written elsewhere, never delivered here).
pub async fn handle(fanout: &Fanout, changes: &[starling_store::Change]) {
    for c in changes {
        if let Some(conv) = keys::parse_conversation(&c.key) {
            if let Err(e) = fanout.messenger.reload(conv).await {
                tracing::debug!(error = %e, conv, "messenger tail: record not reloaded");
            }
            continue;
        }
        if let Some((user, conv, _)) = keys::parse_read(&c.key) {
            // Elements come and go (a writer removes those below its own): the marker is
            // the highest one now.
            if c.origin != starling_store::Origin::Local
                && let Ok(conv) = fanout.messenger.conversation(conv).await
                && let Ok(seq) = fanout.messenger.read_marker(user, conv.id).await
            {
                fanout.local_read(&conv, user, seq);
            }
            continue;
        }
        let Some((conv, seq)) = keys::parse_message(&c.key) else {
            continue;
        };
        // Written here (this node is the slot's owner) and already delivered by the
        // sender's path on this node: it was stored before that delivery, so a resume
        // finds it. A replicated one is always delivered: a resume may have run before
        // it arrived here, and its cursor waits for it.
        if c.origin == starling_store::Origin::Local && fanout.delivered(conv, seq) {
            continue;
        }
        let delivered = async {
            // (A replicated slot of a later lease holder fences this node's lease.)
            if let Some(m) = fanout.messenger.message_noting_epoch(conv, seq).await? {
                let conv = fanout.messenger.state_for(&m).await?;
                fanout.local_message(&conv, &m);
            }
            Ok::<_, crate::MessengerError>(())
        };
        if let Err(e) = delivered.await {
            tracing::debug!(error = %e, conv, seq, "messenger tail: not delivered");
        }
    }
}

/// How long the tail lets arrivals gather after a wake-up.
const TAIL_LINGER: std::time::Duration = std::time::Duration::from_millis(1);
