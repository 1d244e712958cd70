//! `/v1/posts`, `/v1/users/{id}/posts`, `/v1/media`.

use crate::AppState;
use crate::auth::AuthUser;
use crate::json::{JsonBody, ListParams, parse_id, rfc3339};
use crate::problem::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use starling_posts::{MediaRef, Post};

/// Largest media upload.
pub const MAX_MEDIA_BYTES: usize = 10 << 20;
/// Content types accepted for media.
pub const MEDIA_TYPES: [&str; 5] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "video/mp4",
];

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct PostView {
    id: String,
    author: String,
    text: String,
    media: Vec<String>,
    created_at: String,
    edited_at: Option<String>,
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
        }
    }
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct PostList {
    pub(crate) items: Vec<PostView>,
    pub(crate) next_cursor: Option<String>,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewPost {
    text: String,
    #[serde(default)]
    media: Vec<String>,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostPatch {
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
}

#[utoipa::path(post, path = "/v1/posts", tag = "posts", security(("bearer" = [])), request_body = NewPost,
    params(("Idempotency-Key" = Option<String>, Header, description = "a retry with the same key returns the original post")),
    responses((status = 201, description = "published", body = PostView), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid text or media", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn create(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    headers: HeaderMap,
    JsonBody(b): JsonBody<NewPost>,
) -> Result<(StatusCode, Json<PostView>), ApiError> {
    let idem = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::BadRequest("Idempotency-Key must be visible ASCII".into()))?
                .to_string(),
        ),
        None => None,
    };
    let media = b
        .media
        .iter()
        .map(|m| parse_id(m))
        .collect::<Result<Vec<u64>, _>>()?;
    let region = state.graph.user(me).await?.region;
    let (post, _) = state
        .posts
        .create(me, &region, &b.text, &media, idem.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(post.into())))
}

#[utoipa::path(get, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])), params(("id" = String, Path, description = "post id")),
    responses((status = 200, description = "the post", body = PostView), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown or deleted", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn read(
    State(state): State<AppState>,
    _: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<PostView>, ApiError> {
    Ok(Json(state.posts.get(parse_id(&id)?).await?.into()))
}

#[utoipa::path(patch, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])), params(("id" = String, Path, description = "post id")), request_body = PostPatch,
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

#[utoipa::path(delete, path = "/v1/posts/{id}", tag = "posts", security(("bearer" = [])), params(("id" = String, Path, description = "post id")),
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

#[utoipa::path(get, path = "/v1/users/{id}/posts", tag = "posts", security(("bearer" = [])), params(("id" = String, Path, description = "user id"), crate::json::ListParams),
    responses((status = 200, description = "the author's posts, newest first", body = PostList), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown user", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn by_author(
    State(state): State<AppState>,
    _: AuthUser,
    Path(id): Path<String>,
    Query(q): Query<ListParams>,
) -> Result<Json<PostList>, ApiError> {
    let id = parse_id(&id)?;
    let (limit, cursor) = q.parse()?;
    if !state.graph.exists(id).await? {
        return Err(ApiError::NotFound("user not found"));
    }
    let page = state.posts.by_author(id, cursor, limit).await?;
    Ok(Json(PostList {
        items: page.posts.into_iter().map(PostView::from).collect(),
        next_cursor: page.next.map(|n| n.to_string()),
    }))
}

fn media_id() -> Result<u64, ApiError> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|_| ApiError::Internal("no randomness".into()))?;
    // Keep ids positive in JavaScript's eyes too: they travel as strings, but 63 bits is plenty.
    Ok(u64::from_be_bytes(b) >> 1)
}

#[utoipa::path(post, path = "/v1/media", tag = "posts", security(("bearer" = [])),
    request_body(content = Vec<u8>, description = "the bytes, with their Content-Type", content_type = "application/octet-stream"),
    responses((status = 201, description = "stored", body = MediaView), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 413, description = "over 10 MiB", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "content type not allowed", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<MediaView>), ApiError> {
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
        return Err(ApiError::Invalid(format!(
            "content type {content_type:?} is not one of {MEDIA_TYPES:?}"
        )));
    }
    if body.is_empty() {
        return Err(ApiError::Invalid("empty media".into()));
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

#[utoipa::path(get, path = "/v1/media/{id}", tag = "posts", security(("bearer" = [])), params(("id" = String, Path, description = "media id")),
    responses((status = 200, description = "the bytes"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown media", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn download(
    State(state): State<AppState>,
    _: AuthUser,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let r = state
        .posts
        .media(parse_id(&id)?)
        .await?
        .ok_or(ApiError::NotFound("media not found"))?;
    let path = object_store::path::Path::from(r.path.as_str());
    let bytes = match state.media.get(&path).await {
        Ok(got) => got
            .bytes()
            .await
            .map_err(|e| ApiError::Internal(format!("blob store: {e}")))?,
        // The reference replicated before the blob (blobs are per node until an S3 store is
        // configured): a clear 404 rather than an error.
        Err(object_store::Error::NotFound { .. }) => {
            return Err(ApiError::NotFound("media bytes are not on this node"));
        }
        Err(e) => return Err(ApiError::Internal(format!("blob store: {e}"))),
    };
    let ct = HeaderValue::from_str(&r.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    Ok(([(header::CONTENT_TYPE, ct)], bytes).into_response())
}
