//! Creating notifications: who is told of what, and the rules every event follows — nobody is
//! notified of their own act, nothing crosses a block (either way), and a notification that
//! cannot be written is logged, never a failure of the act that caused it.

use crate::AppState;
use starling_posts::notifications::{NotificationKind, Stored};

/// Tells `recipient` that `actor` did `kind` (to their post `post`, in the actor's post
/// `subject`). Nothing for oneself or across a block.
pub(crate) async fn notify(
    state: &AppState,
    recipient: u64,
    kind: NotificationKind,
    actor: u64,
    post: Option<u64>,
    subject: Option<u64>,
) {
    if recipient == actor {
        return;
    }
    let done = async {
        if state.graph.blocked_either(recipient, actor).await? {
            return Ok(());
        }
        let stored = Stored {
            kind,
            actor,
            post,
            subject,
            created_at_ms: now_ms(),
        };
        state.posts.notifications().add(recipient, stored).await?;
        Ok::<_, crate::problem::ApiError>(())
    };
    if let Err(e) = done.await {
        tracing::warn!(error = %e, recipient, actor, kind = kind.name(), "notification not written");
    }
}

/// Notifies the users `text` mentions (`@handle`, existing handles only; at most
/// [`starling_posts::mentions::MAX_MENTIONS`]) that `author` mentioned them in `post`, except
/// those in `skip` (already told of the post otherwise, e.g. as the replied-to author).
/// Returns the ids of the users mentioned.
pub(crate) async fn mentions(
    state: &AppState,
    author: u64,
    post: u64,
    text: &str,
    skip: &[u64],
) -> Vec<u64> {
    let mut ids = Vec::new();
    for handle in starling_posts::mentions::handles(text) {
        let user = match state.graph.user_by_handle(&handle).await {
            Ok(u) => u,
            Err(starling_graph::GraphError::NotFound(_)) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "a mention's handle could not be looked up");
                continue;
            }
        };
        ids.push(user.id);
        if !skip.contains(&user.id) {
            notify(
                state,
                user.id,
                NotificationKind::Mention,
                author,
                None,
                Some(post),
            )
            .await;
        }
    }
    ids
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The notifications of a new post: its parent's author of a reply (when `parent` is the
/// replied-to post and its author), the quoted post's author of a quote (`quoted`, likewise),
/// and the users it mentions (each of them once).
pub(crate) async fn post_created(
    state: &AppState,
    post: &starling_posts::Post,
    parent: Option<(u64, u64)>,
    quoted: Option<(u64, u64)>,
) {
    let mut told = Vec::new();
    if let Some((quoted, author)) = quoted {
        notify(
            state,
            author,
            NotificationKind::Quote,
            post.author,
            Some(quoted),
            Some(post.id),
        )
        .await;
        told.push(author);
    }
    if let Some((parent, author)) = parent {
        notify(
            state,
            author,
            NotificationKind::Reply,
            post.author,
            Some(parent),
            Some(post.id),
        )
        .await;
        told.push(author);
    }
    mentions(state, post.author, post.id, &post.text, &told).await;
}
