//! Live delivery: each node tails its replica's change feed and sends every notification that
//! lands there (written here, or replicated from another node or region) as a `notification`
//! frame to the recipient's WebSocket connections on this node. Every node holds every
//! notification, so a user connected anywhere hears of it. The tail starts at the feed's end (a
//! client that was away reads `GET /v1/notifications`); what the trimmer removed before the tail
//! read it is not delivered live (it is still listed). `starling_notifications_delivered` counts
//! the frames queued. Several nodes on one ScyllaDB keyspace with `--redis` do not run this tail
//! (a node's feed holds only its own writes there): the keyspace feed's holders deliver every
//! node's notifications over the region's bus (`crate::cache_bus`), through [`deliver`].
//! Without `--redis` they do, for this node's own writes, and each node's reader of the
//! keyspace feed (`crate::keyspace_tail`) delivers the notifications other nodes wrote.

use crate::AppState;
use starling_messenger::OutItem;
use starling_messenger::protocol::{ServerFrame, encode};
use starling_posts::notifications::{Group, parse_key};
use starling_store::consumer::{Tail, Wake};
use tokio::sync::watch;

/// Runs until `shutdown` turns true.
pub(crate) async fn run(state: AppState, shutdown: watch::Receiver<bool>) {
    if state.keyspace_feed.delivers_notifications() {
        // Several nodes on one keyspace with a bus: the keyspace feed's holders deliver every
        // node's notifications (`cache_bus`); this tail would repeat this node's own.
        return;
    }
    // A burst of writes is one read of the feed, as for every consumer
    // (`starling_store::consumer::LINGER`): woken per write, this tail read the feed once
    // per chat message (1.5 % of a node's CPU at 10 000 msg/s).
    // Only notifications wake it (not chat messages, likes or posts).
    let mut tail = Tail::new(
        state.store.clone(),
        "notification tail",
        Wake::On(&[starling_posts::notifications::NOTIFICATIONS]),
        starling_store::consumer::LINGER,
        shutdown,
    );
    while let Some(changes) = tail.next().await {
        for c in changes {
            let Some((recipient, id)) = parse_key(&c.key) else {
                continue;
            };
            if !state.fanout.hub.is_online(recipient) {
                continue;
            }
            if let Err(e) = deliver(&state, recipient, id).await {
                tracing::debug!(error = %e, recipient, id, "notification tail: not delivered");
            }
        }
    }
}

/// Sends notification `recipient`/`id` (if it is still there: not removed since) to the
/// recipient's connections here.
pub(crate) async fn deliver(
    state: &AppState,
    recipient: u64,
    id: u64,
) -> Result<(), crate::problem::ApiError> {
    let n = state.posts.notifications();
    let Some(item) = n.get(recipient, id).await? else {
        return Ok(());
    };
    let group = starling_posts::notifications::group(std::slice::from_ref(&item));
    let Some(g) = group.first() else {
        return Ok(());
    };
    let marker = n.read_marker(recipient).await?;
    let Some(view) = super::view(state, recipient, g, marker).await? else {
        return Ok(());
    };
    let frame = frame(&view, g)?;
    let queued = state
        .fanout
        .hub
        .deliver(&[recipient], None, &OutItem::Frame(frame));
    n.count_delivered(queued as u64);
    Ok(())
}

/// `{"type":"notification", …item}` with the item's own type as `notification_type`.
fn frame(
    view: &super::NotificationView,
    g: &Group,
) -> Result<bytes::Bytes, crate::problem::ApiError> {
    let serde_json::Value::Object(mut item) = serde_json::to_value(view)
        .map_err(|e| crate::problem::ApiError::Internal(e.to_string()))?
    else {
        return Err(crate::problem::ApiError::Internal(
            "a notification is not an object".into(),
        ));
    };
    item.remove("type");
    item.insert("notification_type".into(), g.kind.name().into());
    Ok(encode(&ServerFrame::Notification(&item)))
}

/// `/metrics`: notifications written, trimmed and delivered live by this node.
#[derive(Debug)]
struct Collector(starling_posts::notifications::Notifications);

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut enc: prometheus_client::encoding::DescriptorEncoder) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        for (name, help, v) in [
            (
                "starling_notifications_written",
                "Notifications this node wrote",
                self.0.written(),
            ),
            (
                "starling_notifications_trimmed",
                "Notifications removed past the newest 400 of their user",
                self.0.trimmed(),
            ),
            (
                "starling_notifications_delivered",
                "Notification frames queued to WebSocket connections on this node",
                self.0.delivered(),
            ),
        ] {
            let c = ConstCounter::new(v);
            let m = enc.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(m)?;
        }
        Ok(())
    }
}

/// Adds the notification metrics to `r`.
pub(crate) fn register(
    r: &mut prometheus_client::registry::Registry,
    n: starling_posts::notifications::Notifications,
) {
    r.register_collector(Box::new(Collector(n)));
}
