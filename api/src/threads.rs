//! `GET /v1/posts/{id}/thread`: a post's ancestors (oldest first, a deleted one as a
//! placeholder), the post, and its direct replies page by page (oldest first).

use crate::AppState;
use crate::auth::AuthUser;
use crate::extract::{ListParams, Path, Query, parse_id};
use crate::paging::Page;
use crate::posts::PostView;
use crate::problem::ApiError;
use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::routing::get;
use serde::Serialize;
use starling_posts::replies::ThreadPost;

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/posts/{id}/thread", get(thread))
}

/// A post of a thread, or the placeholder of a deleted one.
#[derive(Serialize, Debug, utoipa::ToSchema)]
#[serde(untagged)]
pub(crate) enum ThreadItem {
    /// The post.
    Post(Box<PostView>),
    /// A deleted post: `{"id", "deleted": true}`.
    Deleted {
        /// The deleted post's id.
        id: String,
        /// Always `true`.
        deleted: bool,
    },
    /// A post of a user who blocked the caller or whom the caller blocked: `{"id", "blocked": true}`.
    Blocked {
        /// The post's id.
        id: String,
        /// Always `true`.
        blocked: bool,
    },
}

/// A page of replies.
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct ReplyList {
    items: Vec<PostView>,
    next_cursor: Option<String>,
}

/// A thread.
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct Thread {
    /// The post's ancestors, oldest first (at most 50, the nearest).
    ancestors: Vec<ThreadItem>,
    /// The post itself (a placeholder if it was deleted: its replies stay readable).
    post: ThreadItem,
    /// Its direct replies, oldest first.
    replies: ReplyList,
}

async fn item(state: &AppState, p: ThreadPost, viewer: u64) -> Result<ThreadItem, ApiError> {
    Ok(match p {
        ThreadPost::Post(p) if !crate::posts::visible_to(state, p.author, viewer).await? => {
            ThreadItem::Blocked {
                id: p.id.to_string(),
                blocked: true,
            }
        }
        ThreadPost::Post(p) => ThreadItem::Post(Box::new(PostView::full(state, p, viewer).await?)),
        ThreadPost::Deleted(id) => ThreadItem::Deleted {
            id: id.to_string(),
            deleted: true,
        },
    })
}

#[utoipa::path(get, path = "/v1/posts/{id}/thread", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "post id"), crate::extract::ListParams),
    description = "A post in its thread: its ancestors (oldest first; a deleted one is `{\"id\",\"deleted\":true}`, one across a block `{\"id\",\"blocked\":true}`), the post (a placeholder too if it was deleted, so its replies stay readable), and a page of its direct replies, oldest first (`cursor`: the last reply's id).",
    responses((status = 200, description = "the thread", body = Thread, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page of replies, while there is one"))), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "the post's author blocked the caller, or the caller blocked them", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown post", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn thread(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    uri: Uri,
    Query(q): Query<ListParams>,
) -> Result<Page<Thread>, ApiError> {
    let id = parse_id(&id)?;
    let (limit, cursor) = q.parse()?;
    let post = state.posts.thread_post(id).await?;
    if let ThreadPost::Post(p) = &post {
        crate::posts::readable_by(&state, p.author, me).await?;
    }
    let mut ancestors = Vec::new();
    for a in state.posts.ancestors(id).await? {
        ancestors.push(item(&state, a, me).await?);
    }
    let page = state.posts.replies(id, cursor, limit).await?;
    let mut items = Vec::with_capacity(page.posts.len());
    // Whether each author of the page deleted their account (one read per distinct author).
    let mut deleted = std::collections::HashMap::new();
    for p in page.posts {
        // Replies across a block are left out (the cursor still moves past them), and so are a
        // deleted account's, which its sweep has not deleted yet.
        if !crate::posts::visible_to(&state, p.author, me).await? {
            continue;
        }
        let gone = match deleted.get(&p.author) {
            Some(d) => *d,
            None => {
                let d = state.graph.is_deleted(p.author).await?;
                deleted.insert(p.author, d);
                d
            }
        };
        if !gone {
            items.push(PostView::full(&state, p, me).await?);
        }
    }
    let next = page.next.map(|n| n.to_string());
    let link = next.as_deref().map(|n| ("cursor", n));
    let thread = Thread {
        ancestors,
        post: item(&state, post, me).await?,
        replies: ReplyList {
            items,
            next_cursor: next.clone(),
        },
    };
    Ok(Page::new(&uri, link, thread))
}
