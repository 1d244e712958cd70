//! `/v1/posts`, `/v1/users/{id}/posts`, `/v1/media` (downloads for browsers: [`crate::media`]).

use crate::AppState;
use crate::auth::AuthUser;
use crate::extract::{JsonBody, ListParams, Path, Query, parse_id, rfc3339};
use crate::media;
use crate::notifications::ActorView;
use crate::problem::{ApiError, Refusal};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use starling_posts::{MediaRef, Post};

/// Largest media upload.
pub const MAX_MEDIA_BYTES: usize = 10 << 20;
/// Content types accepted for media: passive formats only (no SVG, HTML or anything a browser
/// would run). Any other is refused with 415.
pub const MEDIA_TYPES: [&str; 5] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "video/mp4",
];

/// The file extension of an accepted media type.
fn extension(content_type: &str) -> Option<&'static str> {
    Some(match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "video/mp4" => "mp4",
        _ => return None,
    })
}

/// Major brands of an ISO base media file that are MP4 (not QuickTime, HEIF or AVIF).
const MP4_BRANDS: [&[u8; 4]; 14] = [
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"mp41", b"mp42", b"mp71", b"avc1",
    b"dash", b"mmp4", b"M4V ", b"MSNV",
];

/// The accepted media type the bytes are, by their magic numbers.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Some("image/webp")
    } else if bytes.get(4..8) == Some(b"ftyp")
        && bytes
            .get(8..12)
            .is_some_and(|brand| MP4_BRANDS.iter().any(|b| &b[..] == brand))
    {
        Some("video/mp4")
    } else {
        None
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct PostView {
    id: String,
    author: String,
    /// The author's summary: handle, display name, avatar (on every read but a create's answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) author_summary: Option<ActorView>,
    text: String,
    media: Vec<String>,
    created_at: String,
    edited_at: Option<String>,
    /// The post this one answers, on a single post's read, a thread and a create (absent from
    /// list items for now).
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_to: Option<String>,
    /// The post this one quotes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::contract::Id>)]
    quote_of: Option<String>,
    /// The quoted post, on reads (absent when it was deleted, or its author and the caller
    /// blocked one another).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) quoted: Option<QuotedView>,
    /// The post's counters, on reads (a feed page, a list, a thread, a single post).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) counts: Option<PostCounts>,
    /// The caller's state towards the post, on reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) viewer: Option<ViewerState>,
    /// Who reposted it, when this item is a repost (in a feed or the reposter's list): the item
    /// is the reposted post, `repost_id` the repost's own id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reposted_by: Option<ActorView>,
    /// The repost's own id (a feed's cursor counts it, `DELETE /v1/posts/{id}/repost` of the
    /// post takes it back).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::contract::Id>)]
    pub(crate) repost_id: Option<String>,
}

/// A quoted post, shown inside the post that quotes it.
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct QuotedView {
    #[schema(value_type = crate::contract::Id)]
    id: String,
    #[schema(value_type = crate::contract::Id)]
    author: String,
    /// The author's summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    author_summary: Option<ActorView>,
    text: String,
    media: Vec<String>,
    created_at: String,
}

impl QuotedView {
    pub(crate) fn new(p: &Post, author_summary: Option<ActorView>) -> Self {
        QuotedView {
            id: p.id.to_string(),
            author: p.author.to_string(),
            author_summary,
            text: p.text.clone(),
            media: p.media.iter().map(u64::to_string).collect(),
            created_at: rfc3339(p.created_at_ms),
        }
    }
}

/// A post's counters, as the serving node derives them (a few milliseconds behind the writes).
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct PostCounts {
    /// Distinct users who like the post.
    likes: u64,
    /// Direct replies to the post.
    replies: u64,
    /// Distinct users who repost the post.
    reposts: u64,
    /// Posts that quote the post.
    quotes: u64,
}

impl From<starling_posts::likes::Counts> for PostCounts {
    fn from(c: starling_posts::likes::Counts) -> Self {
        PostCounts {
            likes: c.likes,
            replies: c.replies,
            reposts: c.reposts,
            quotes: c.quotes,
        }
    }
}

/// What the caller did to a post (read from their own records: never behind).
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct ViewerState {
    /// The caller likes the post.
    pub(crate) liked: bool,
    /// The caller reposts the post.
    pub(crate) reposted: bool,
}

/// Whether `viewer` may see what `author` wrote: not when either blocked the other.
pub(crate) async fn visible_to(
    state: &AppState,
    author: u64,
    viewer: u64,
) -> Result<bool, ApiError> {
    Ok(author == viewer || !state.graph.blocked_either(viewer, author).await?)
}

/// `Forbidden` when either of `author` and `viewer` blocked the other.
pub(crate) async fn readable_by(
    state: &AppState,
    author: u64,
    viewer: u64,
) -> Result<(), ApiError> {
    if visible_to(state, author, viewer).await? {
        Ok(())
    } else {
        Err(ApiError::Forbidden("blocked"))
    }
}

/// The post `id` when `viewer` may see it: `NotFound` if unknown or deleted, `Forbidden` when
/// either of its author and `viewer` blocked the other.
pub(crate) async fn readable_post(
    state: &AppState,
    id: u64,
    viewer: u64,
) -> Result<Post, ApiError> {
    let post = state.posts.get(id).await?;
    readable_by(state, post.author, viewer).await?;
    Ok(post)
}

impl PostView {
    /// The hydrated view of `post` for `viewer` with what it answers (a repost: the reposted
    /// post, with `reposted_by`); `Forbidden` for a repost of a post across a block, `NotFound`
    /// for one of a deleted post.
    pub(crate) async fn full(state: &AppState, post: Post, viewer: u64) -> Result<Self, ApiError> {
        let reposted = post.repost_of;
        let mut views =
            crate::hydrate::views(state, viewer, &[std::sync::Arc::new(post)], &[]).await?;
        let Some(mut view) = views.pop() else {
            if let Some(o) = reposted {
                let orig = state.posts.get(o).await?;
                readable_by(state, orig.author, viewer).await?;
            }
            return Err(ApiError::NotFound("post not found"));
        };
        let id = parse_id(&view.id)?;
        view.reply_to = state.posts.reply_to(id).await?.map(|p| p.to_string());
        Ok(view)
    }
}

impl From<Post> for PostView {
    fn from(p: Post) -> Self {
        PostView::from(&p)
    }
}

impl From<&Post> for PostView {
    fn from(p: &Post) -> Self {
        PostView {
            id: p.id.to_string(),
            author: p.author.to_string(),
            text: p.text.clone(),
            media: p.media.iter().map(u64::to_string).collect(),
            created_at: rfc3339(p.created_at_ms),
            edited_at: p.edited_at_ms.map(rfc3339),
            reply_to: None,
            author_summary: None,
            quote_of: p.quote_of.map(|q| q.to_string()),
            quoted: None,
            counts: None,
            viewer: None,
            reposted_by: None,
            repost_id: None,
        }
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct PostList {
    pub(crate) items: Vec<PostView>,
    pub(crate) next_cursor: Option<String>,
}

/// An `Idempotency-Key` as the document's pattern has it: 1–128 visible ASCII characters, spaces
/// inside only (a tab, an empty value or a 129th character is 400, not a key).
fn idempotency_key(v: &[u8]) -> Result<String, ApiError> {
    let visible = |c: &u8| (0x21..=0x7e).contains(c);
    let ok = (1..=128).contains(&v.len())
        && v.iter().all(|c| *c == b' ' || visible(c))
        && v.first().is_some_and(visible)
        && v.last().is_some_and(visible);
    if !ok {
        return Err(ApiError::BadRequest(
            "Idempotency-Key is 1 to 128 visible ASCII characters (spaces only inside)".into(),
        ));
    }
    Ok(String::from_utf8_lossy(v).into_owned())
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPost {
    /// 1–5000 characters, not only spaces, no NUL.
    #[schema(
        min_length = 1,
        max_length = 5000,
        pattern = "^[^\\x00]*[^\\s\\x00][^\\x00]*$",
        example = "hello, world"
    )]
    text: String,
    /// Up to 4 media ids, each uploaded by the author (`POST /v1/media`).
    #[serde(default)]
    #[schema(value_type = Vec<crate::contract::Id>, max_items = 4)]
    media: Vec<String>,
    /// The post this one answers (422 if there is no such post, 403 across a block).
    #[serde(default)]
    #[schema(value_type = Option<crate::contract::Id>)]
    reply_to: Option<String>,
    /// The post this one quotes (422 if there is no such post, 403 across a block; quoting a
    /// repost quotes the reposted post).
    #[serde(default)]
    #[schema(value_type = Option<crate::contract::Id>)]
    quote_of: Option<String>,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostPatch {
    /// 1–5000 characters, not only spaces, no NUL.
    #[schema(
        min_length = 1,
        max_length = 5000,
        pattern = "^[^\\x00]*[^\\s\\x00][^\\x00]*$",
        example = "hello, world"
    )]
    text: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct MediaView {
    id: String,
    url: String,
    content_type: String,
    size: u64,
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/posts", post(create))
        .route("/v1/posts/{id}", get(read).patch(edit).delete(remove))
        .route("/v1/users/{id}/posts", get(by_author))
        .route(
            "/v1/media",
            post(upload).layer(DefaultBodyLimit::max(MAX_MEDIA_BYTES)),
        )
        .route("/v1/media/{id}", get(download))
        .route("/v1/media/{id}/url", get(media_url))
}

#[utoipa::path(post, path = "/v1/posts", tag = "posts", security(("bearer" = [])), request_body = NewPost,
    description = "Publishes a post. With an `Idempotency-Key` (1–128 bytes, per author), a retry returns the original post and publishes nothing new. The key is claimed after the post is written; a retry whose key is claimed but whose post is not there answers: **410 Gone** when the author deleted that post (a retry never publishes it again: use a new key); **201** with the post under the claimed id when the first attempt failed after its claim may have landed (it took its post back, the retry completes the create); **409** while the post is not in this region yet or the failed attempt is still taking its post back, for at most 60 s after the claim, then 410 — a retry is never \"in progress\" for good.",
    params(("Idempotency-Key" = Option<String>, Header, pattern = "^[\\x21-\\x7e]([\\x20-\\x7e]{0,126}[\\x21-\\x7e])?$", example = "3f1c2a9e-post-1", description = "1–128 visible ASCII characters; a retry with the same key returns the original post (see the description for a deleted or failed original)")),
    responses((status = 201, description = "published (or the original, on a retry)", body = PostView), (status = 400, description = "malformed JSON or Idempotency-Key", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "`reply_to` names a post of a user who blocked the caller, or whom the caller blocked", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 409, description = "the first request with this Idempotency-Key is still being applied; retry", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 410, description = "the post created with this Idempotency-Key was deleted", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 413, description = "body over 64 KiB", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid text or media, or a `reply_to` that names no post", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    headers: HeaderMap,
    JsonBody(b): JsonBody<NewPost>,
) -> Result<(StatusCode, Json<PostView>), Refusal> {
    let idem = match headers.get("idempotency-key") {
        Some(v) => Some(idempotency_key(v.as_bytes())?),
        None => None,
    };
    let media = b
        .media
        .iter()
        .map(|m| parse_id(m))
        .collect::<Result<Vec<u64>, _>>()?;
    let parent = match &b.reply_to {
        Some(r) => {
            let parent = match state.posts.get(parse_id(r)?).await {
                Ok(p) => p,
                Err(starling_posts::PostError::NotFound) => {
                    return Err(ApiError::Invalid("reply_to: no such post".into()).into());
                }
                Err(e) => return Err(ApiError::from(e).into()),
            };
            readable_by(&state, parent.author, me).await?;
            Some((parent.id, parent.author))
        }
        None => None,
    };
    let quoted = match &b.quote_of {
        Some(q) => {
            let mut quoted = match state.posts.get(parse_id(q)?).await {
                Ok(p) => p,
                Err(starling_posts::PostError::NotFound) => {
                    return Err(ApiError::Invalid("quote_of: no such post".into()).into());
                }
                Err(e) => return Err(ApiError::from(e).into()),
            };
            if let Some(original) = quoted.repost_of {
                quoted = state.posts.get(original).await.map_err(|e| match e {
                    starling_posts::PostError::NotFound => {
                        ApiError::Invalid("quote_of: the reposted post was deleted".into())
                    }
                    e => ApiError::from(e),
                })?;
            }
            readable_by(&state, quoted.author, me).await?;
            Some((quoted.id, quoted.author))
        }
        None => None,
    };
    let region = state.graph.user(me).await.map_err(ApiError::from)?.region;
    // A reply's record names its parent too (a deleted account's sweep reads it there).
    let links = starling_posts::Links {
        quote_of: quoted.map(|(id, _)| id),
        reply_to: parent.map(|(id, _)| id),
    };
    let (post, created) = state
        .posts
        .create_linked(me, &region, &b.text, &media, idem.as_deref(), links)
        .await?;
    // Linked after the post is written, and again by a retry (idempotent).
    if let Some((parent, _)) = parent {
        state.posts.link_reply(post.id, parent).await?;
    }
    if let Some(quoted) = post.quote_of {
        state.posts.link_quote(post.id, quoted).await?;
    }
    // Told once, by the request that created the post (not by a retry).
    if created {
        crate::notifications::post_created(&state, &post, parent, quoted).await;
    }
    let parent = parent.map(|(id, _)| id);
    let mut view = PostView::from(post);
    view.reply_to = parent.map(|p| p.to_string());
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "post id")),
    responses((status = 200, description = "the post", body = PostView), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "the author blocked the caller, or the caller blocked the author", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown or deleted", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn read(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<Json<PostView>, ApiError> {
    let post = readable_post(&state, parse_id(&id)?, me).await?;
    Ok(Json(PostView::full(&state, post, me).await?))
}

#[utoipa::path(patch, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "post id")), request_body = PostPatch,
    responses((status = 200, description = "the edited post", body = PostView), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not the author", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown or deleted", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn edit(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<PostPatch>,
) -> Result<Json<PostView>, ApiError> {
    let id = parse_id(&id)?;
    let post = state.posts.edit(id, me, &b.text).await?;
    state.feed.post_changed(id).await;
    Ok(Json(post.into()))
}

#[utoipa::path(delete, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "post id")),
    responses((status = 204, description = "deleted everywhere"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "not the author", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown or deleted", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn remove(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = parse_id(&id)?;
    state.posts.delete(id, me).await?;
    state.feed.post_changed(id).await;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/users/{id}/posts", tag = "posts", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "user id"), crate::extract::ListParams),
    responses((status = 200, description = "the author's posts, newest first", body = PostList, headers(("Link" = String, description = "`<…>; rel=\"next\"`: the next page, while there is one"))), (status = 400, description = "bad id, limit or cursor, or a repeated query parameter", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "the author blocked the caller, or the caller blocked the author", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown user", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn by_author(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Path(id): Path<String>,
    uri: axum::http::Uri,
    Query(q): Query<ListParams>,
) -> Result<crate::paging::Page<PostList>, ApiError> {
    let id = parse_id(&id)?;
    let (limit, cursor) = q.parse()?;
    if !state.graph.exists(id).await? {
        return Err(ApiError::NotFound("user not found"));
    }
    readable_by(&state, id, me).await?;
    let page = state.posts.by_author(id, cursor, limit).await?;
    let next = page.next.map(|n| n.to_string());
    let posts: Vec<std::sync::Arc<Post>> =
        page.posts.into_iter().map(std::sync::Arc::new).collect();
    let list = PostList {
        items: crate::hydrate::views(&state, me, &posts, &[]).await?,
        next_cursor: next.clone(),
    };
    let link = next.as_deref().map(|n| ("cursor", n));
    Ok(crate::paging::Page::new(&uri, link, list))
}

fn media_id() -> Result<u64, ApiError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|_| ApiError::Internal("no randomness".into()))?;
    // Keep ids positive in JavaScript's eyes too: they travel as strings, but 63 bits is plenty.
    Ok(u64::from_be_bytes(b) >> 1)
}

#[utoipa::path(post, path = "/v1/media", tag = "posts", security(("bearer" = [])),
    description = "Stores media. The Content-Type must be one of image/png, image/jpeg, image/gif, image/webp, video/mp4 (anything else, SVG and HTML included, is 415), and the bytes must be of that type by their magic numbers (else 422).",
    request_body(description = "the bytes, with their Content-Type", content(
        (crate::contract::Binary = "image/png"), (crate::contract::Binary = "image/jpeg"),
        (crate::contract::Binary = "image/gif"), (crate::contract::Binary = "image/webp"),
        (crate::contract::Binary = "video/mp4"))),
    responses((status = 201, description = "stored", body = MediaView), (status = 400, description = "the body could not be read", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 413, description = "over 10 MiB", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 415, description = "content type not allowed (only image/png, image/jpeg, image/gif, image/webp, video/mp4)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "empty, or the bytes are not of the declared content type", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<MediaView>), Refusal> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("media is at most {MAX_MEDIA_BYTES} bytes"))
        } else {
            ApiError::BadRequest("the body could not be read".into())
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    if !MEDIA_TYPES.contains(&content_type.as_str()) {
        return Err(Refusal::UnsupportedMediaType(format!(
            "content type {content_type:?} is not one of {MEDIA_TYPES:?}"
        )));
    }
    if body.is_empty() {
        return Err(ApiError::Invalid("empty media".into()).into());
    }
    match sniff(&body) {
        Some(t) if t == content_type => {}
        Some(t) => {
            return Err(Refusal::Api(ApiError::Invalid(format!(
                "the bytes are {t}, not the declared {content_type}"
            ))));
        }
        None => {
            return Err(Refusal::Api(ApiError::Invalid(format!(
                "the bytes are not {content_type} (their signature does not match)"
            ))));
        }
    }
    let id = media_id()?;
    let path = object_store::path::Path::from(format!("{id}"));
    let size = body.len() as u64;
    state
        .media
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|e| ApiError::Internal(format!("blob store: {e}")))?;
    let r = MediaRef {
        id,
        owner: me,
        content_type: content_type.clone(),
        size,
        path: path.to_string(),
    };
    state.posts.put_media(&r).await?;
    Ok((
        StatusCode::CREATED,
        Json(MediaView {
            id: id.to_string(),
            url: format!("/v1/media/{id}"),
            content_type,
            size,
        }),
    ))
}

/// Media download responses, documented once for the bearer and the signed form.
const DOWNLOAD_DESCRIPTION: &str = "Downloads media. With a bearer token, or without one through a signed URL (`?exp=&sig=`, from `GET /v1/media/{id}/url`): an `<img>` tag or a CDN can fetch it. When `exp` and `sig` are present the signature decides (a bad or expired one is 403 whatever the token). Media never changes: the answer carries a strong `ETag`, `If-None-Match` with it answers 304, and `Cache-Control` is `private, max-age=86400, immutable` (bearer) or `public, max-age=<seconds left>, immutable` (signed). One byte range (`Range: bytes=…`) answers 206 with `Content-Range`; a range past the end 416; several ranges, a malformed one or an `If-Range` that does not match the `ETag` answer the whole media (200).";

#[utoipa::path(get, path = "/v1/media/{id}", tag = "posts", security((), ("bearer" = [])), description = DOWNLOAD_DESCRIPTION,
    params(("id" = crate::contract::Id, Path, description = "media id"),
        ("exp" = Option<u64>, Query, description = "a signed URL's expiry (unix seconds); with `sig`"),
        ("sig" = Option<String>, Query, pattern = "^[0-9a-f]{64}$", description = "a signed URL's signature; with `exp`"),
        ("Range" = Option<String>, Header, description = "one byte range, e.g. `bytes=0-1023`"),
        ("If-None-Match" = Option<String>, Header, description = "the `ETag` of a copy the client has"),
        ("If-Range" = Option<String>, Header, description = "the range only while this is the `ETag`")),
    responses((status = 200, description = "the bytes, with their stored type, `X-Content-Type-Options: nosniff`, `Content-Disposition: inline; filename=\"<id>.<ext>\"`, `ETag`, `Cache-Control` and `Accept-Ranges: bytes`", content(
        (crate::contract::Binary = "image/png"), (crate::contract::Binary = "image/jpeg"),
        (crate::contract::Binary = "image/gif"), (crate::contract::Binary = "image/webp"),
        (crate::contract::Binary = "video/mp4"), (crate::contract::Binary = "application/octet-stream"))),
        (status = 206, description = "the requested byte range, with `Content-Range`", content(
        (crate::contract::Binary = "image/png"), (crate::contract::Binary = "image/jpeg"),
        (crate::contract::Binary = "image/gif"), (crate::contract::Binary = "image/webp"),
        (crate::contract::Binary = "video/mp4"), (crate::contract::Binary = "application/octet-stream"))),
        (status = 304, description = "the client's copy (`If-None-Match`) is current"),
        (status = 400, description = "bad id, or `exp`/`sig` malformed or repeated", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token (and no signature)", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "the signature is not valid for this media, expired, or only one of `exp` and `sig` is given", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown media", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 416, description = "the range is past the end of the media (`Content-Range: bytes */<size>`)", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn download(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let now = media::now_secs();
    // Who may: a valid signature for this id, or (without one) a user's token. Checked before
    // the media is looked up, so neither says whether an id exists.
    let signed_until = match media::signed_query(query.as_deref())? {
        Some(s) => {
            state
                .media_urls
                .verify(id, s.exp, &s.sig, now)
                .map_err(|e| ApiError::ForbiddenMsg(e.to_string()))?;
            Some(s.exp)
        }
        None => {
            let token = crate::auth::bearer_token(&headers).ok_or(ApiError::Unauthorized)?;
            state.graph.authenticate(token).await?;
            None
        }
    };
    let r = state
        .posts
        .media(id)
        .await?
        .ok_or(ApiError::NotFound("media not found"))?;
    let etag = media::etag(id);
    let etag_value =
        HeaderValue::from_str(&etag).map_err(|e| ApiError::Internal(format!("etag: {e}")))?;
    let cache = media::cache_control(signed_until, now);
    if media::not_modified(&headers, &etag) {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag_value), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    let path = object_store::path::Path::from(r.path.as_str());
    let part = match media::range(&headers, r.size, &etag) {
        media::RangeAsk::Whole => None,
        media::RangeAsk::Part(p) => Some(p),
        media::RangeAsk::Unsatisfiable => {
            let mut resp = crate::problem::problem_response(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!(
                    "the media is {} bytes: no byte of the range is in it",
                    r.size
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{}", r.size)) {
                resp.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(resp);
        }
    };
    let fetched = match &part {
        Some(p) => state.media.get_range(&path, *p.start()..*p.end() + 1).await,
        None => match state.media.get(&path).await {
            Ok(got) => got.bytes().await,
            Err(e) => Err(e),
        },
    };
    let bytes = match fetched {
        Ok(b) => b,
        // The reference replicated before the blob (blobs are per node until an S3 store is
        // configured): a clear 404 rather than an error.
        Err(object_store::Error::NotFound { .. }) => {
            return Err(ApiError::NotFound("media bytes are not on this node"));
        }
        Err(e) => return Err(ApiError::Internal(format!("blob store: {e}"))),
    };
    // Served as passive content only: the stored type when it is an accepted one (uploads
    // check it against the bytes), never sniffed, and named by its id, not by anything a
    // user sent.
    let (ct, disposition) = match extension(&r.content_type) {
        Some(ext) => (
            HeaderValue::from_str(&r.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream")),
            format!("inline; filename=\"{id}.{ext}\""),
        ),
        None => (
            HeaderValue::from_static("application/octet-stream"),
            format!("attachment; filename=\"{id}.bin\""),
        ),
    };
    let disposition = HeaderValue::from_str(&disposition)
        .map_err(|e| ApiError::Internal(format!("content-disposition: {e}")))?;
    let mut resp = (
        [
            (header::CONTENT_TYPE, ct),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::CONTENT_DISPOSITION, disposition),
            (header::ETAG, etag_value),
            (header::CACHE_CONTROL, cache),
            (header::ACCEPT_RANGES, HeaderValue::from_static("bytes")),
        ],
        bytes,
    )
        .into_response();
    if let Some(p) = part {
        *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
        let range = format!("bytes {}-{}/{}", p.start(), p.end(), r.size);
        let v = HeaderValue::from_str(&range)
            .map_err(|e| ApiError::Internal(format!("content-range: {e}")))?;
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

/// `?ttl=` of a signed media URL request.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct UrlParams {
    /// Seconds the URL stays valid: 1 to 604800 (7 days), default 3600.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 604800)]
    ttl: Option<String>,
}

/// A signed, expiring URL of a media object.
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct MediaLink {
    /// `/v1/media/{id}?exp=…&sig=…`: opens the media without a token until `expires_at`, on
    /// any node of the region.
    url: String,
    /// When the URL stops working (RFC 3339).
    expires_at: String,
}

#[utoipa::path(get, path = "/v1/media/{id}/url", tag = "posts", security(("bearer" = [])),
    description = "A signed URL of the media, for an `<img>` tag or a CDN: it opens the media without a token until it expires (see `GET /v1/media/{id}`).",
    params(("id" = crate::contract::Id, Path, description = "media id"), UrlParams),
    responses((status = 200, description = "the signed URL", body = MediaLink), (status = 400, description = "bad id or ttl", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown media", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn media_url(
    State(state): State<AppState>,
    _: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<UrlParams>,
) -> Result<Json<MediaLink>, ApiError> {
    let id = parse_id(&id)?;
    let ttl = media::ttl(q.ttl.as_deref())?;
    state
        .posts
        .media(id)
        .await?
        .ok_or(ApiError::NotFound("media not found"))?;
    let exp = media::now_secs().saturating_add(ttl);
    Ok(Json(MediaLink {
        url: state.media_urls.url(id, exp),
        expires_at: rfc3339(exp.saturating_mul(1000)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_is_known_by_its_magic_numbers() {
        assert_eq!(sniff(crate::testing::PNG_1X1), Some("image/png"));
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF"), Some("image/jpeg"));
        assert_eq!(sniff(b"GIF89a\x01\0\x01\0"), Some("image/gif"));
        assert_eq!(sniff(b"RIFF\x24\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"\0\0\0\x18ftypmp42\0\0\0\0"), Some("video/mp4"));
        for other in [
            &b"\0\0\0\x18ftypqt  \0\0\0\0"[..],
            &b"\0\0\0\x18ftypheic"[..],
            b"RIFF\x24\0\0\0WAVEfmt ",
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            b"<html><script>",
            b"\x89PNG fake",
            b"",
        ] {
            assert_eq!(sniff(other), None, "{other:?}");
        }
        for t in MEDIA_TYPES {
            assert!(extension(t).is_some(), "{t}");
        }
        assert_eq!(extension("image/svg+xml"), None);
    }
}

#[cfg(test)]
mod idempotency_key_tests {
    use super::idempotency_key;

    #[test]
    fn a_key_is_what_the_documents_pattern_says() {
        let long = "k".repeat(128);
        for good in ["3f1c2a9e-post-1", "a b", "~", long.as_str()] {
            assert!(idempotency_key(good.as_bytes()).is_ok(), "{good:?}");
        }
        let too_long = "k".repeat(129);
        for bad in ["", " a", "a ", "a\tb", "\t", too_long.as_str()] {
            assert!(idempotency_key(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(idempotency_key(b"caf\xc3\xa9").is_err());
    }
}
