//! `/v1/users`, `/v1/sessions`: sign-up, login, logout, profiles.

use crate::AppState;
use crate::auth::{AuthUser, bearer};
use crate::extract::Path;
use crate::extract::{JsonBody, parse_id, rfc3339};
use crate::limits::{AuthRateLimit, rate_limit};
use crate::problem::ApiError;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use starling_graph::User;

/// A user on the wire (ids as decimal strings, times RFC 3339).
#[derive(Serialize, Debug, utoipa::ToSchema)]
pub struct UserView {
    #[schema(value_type = crate::contract::Id)]
    id: String,
    handle: String,
    display_name: String,
    region: String,
    followers_count: i64,
    following_count: i64,
    created_at: String,
    /// The bio (up to 300 characters), on a single user's read (absent from list items).
    #[serde(skip_serializing_if = "Option::is_none")]
    bio: Option<String>,
    /// The avatar's media id (`GET /v1/media/{id}`), on a single user's read when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::contract::Id>)]
    avatar: Option<String>,
}

impl UserView {
    /// The view of `u` with its bio and avatar.
    pub(crate) async fn with_profile(state: &AppState, u: User) -> Result<Self, ApiError> {
        let p = state.graph.profile(u.id).await?;
        let mut v = UserView::from(u);
        v.bio = Some(p.bio);
        v.avatar = p.avatar.map(|a| a.to_string());
        Ok(v)
    }
}

/// `Some(None)` for an explicit `null` (clears), `None` when the field is absent.
fn nullable<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        UserView {
            id: u.id.to_string(),
            handle: u.handle,
            display_name: u.display_name,
            region: u.region,
            followers_count: u.followers_count,
            following_count: u.following_count,
            created_at: rfc3339(u.created_at_ms),
            bio: None,
            avatar: None,
        }
    }
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignUp {
    /// 3–30 of `A-Z a-z 0-9 _`, unique in any case (stored lower-cased).
    #[schema(pattern = "^[A-Za-z0-9_]{3,30}$", example = "ada")]
    handle: String,
    /// 8–256 characters.
    #[schema(min_length = 8, max_length = 256, example = "correct horse battery")]
    password: String,
    /// 1–64 characters, no control characters (default: the handle).
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,64}$",
        example = "Ada Lovelace"
    )]
    display_name: Option<String>,
    /// The user's home region (default: the node's).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "us")]
    region: Option<String>,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct SignedUp {
    #[schema(value_type = crate::contract::Id)]
    id: String,
    handle: String,
    display_name: String,
    region: String,
    token: String,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Login {
    handle: String,
    password: String,
}

#[derive(Serialize, Debug, utoipa::ToSchema)]
pub(crate) struct SessionView {
    token: String,
    user_id: String,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProfilePatch {
    /// 1–64 characters, no control characters.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,64}$",
        example = "Ada Lovelace"
    )]
    display_name: Option<String>,
    /// Up to 300 characters; line breaks allowed, no other control characters.
    #[schema(max_length = 300)]
    bio: Option<String>,
    /// An image the caller uploaded (`POST /v1/media`), or `null` to remove the avatar.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<crate::contract::Id>)]
    avatar: Option<Option<String>>,
}

/// The routes of this module. Sign-up and login hash passwords: they are rate limited per
/// client address.
pub fn routes(limit: AuthRateLimit) -> Router<AppState> {
    let limited = axum::middleware::from_fn_with_state(limit, rate_limit);
    Router::new()
        .route("/v1/users", post(sign_up).route_layer(limited.clone()))
        .route(
            "/v1/sessions",
            post(login).route_layer(limited).delete(logout),
        )
        .route("/v1/users/me", patch(update_me).get(get_me))
        .route("/v1/users/by-handle/{handle}", get(by_handle))
        .route("/v1/users/{id}", get(get_user))
}

#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = SignUp,
    responses((status = 201, description = "signed up", body = SignedUp), (status = 409, description = "handle taken", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid handle, password or name", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "rate limited", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn sign_up(
    State(state): State<AppState>,
    JsonBody(b): JsonBody<SignUp>,
) -> Result<(StatusCode, Json<SignedUp>), ApiError> {
    let (u, s) = state
        .graph
        .sign_up(
            &b.handle,
            &b.password,
            b.display_name.as_deref(),
            b.region.as_deref(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(SignedUp {
            id: u.id.to_string(),
            handle: u.handle,
            display_name: u.display_name,
            region: u.region,
            token: s.token,
        }),
    ))
}

#[utoipa::path(post, path = "/v1/sessions", tag = "users", request_body = Login,
    responses((status = 200, description = "a new session", body = SessionView), (status = 401, description = "wrong handle or password", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 429, description = "rate limited", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn login(
    State(state): State<AppState>,
    JsonBody(b): JsonBody<Login>,
) -> Result<Json<SessionView>, ApiError> {
    let s = state.graph.login(&b.handle, &b.password).await?;
    Ok(Json(SessionView {
        token: s.token,
        user_id: s.user_id.to_string(),
    }))
}

/// The raw bearer token, for logout.
pub(crate) struct Token(pub(crate) String);

impl FromRequestParts<AppState> for Token {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        bearer(parts)
            .map(|t| Token(t.to_string()))
            .ok_or(ApiError::Unauthorized)
    }
}

#[utoipa::path(delete, path = "/v1/sessions", tag = "users", security(("bearer" = [])),
    responses((status = 204, description = "token revoked"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn logout(
    State(state): State<AppState>,
    Token(t): Token,
) -> Result<StatusCode, ApiError> {
    state.graph.logout(&t).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/v1/users/{id}", tag = "users", security(("bearer" = [])), params(("id" = crate::contract::Id, Path, description = "user id")),
    responses((status = 200, description = "the user", body = UserView), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown user", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn get_user(
    State(state): State<AppState>,
    _: AuthUser,
    Path(id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let u = state.graph.user(parse_id(&id)?).await?;
    Ok(Json(UserView::with_profile(&state, u).await?))
}

#[utoipa::path(get, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, description = "the caller", body = UserView), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn get_me(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
) -> Result<Json<UserView>, ApiError> {
    let u = state.graph.user(me).await?;
    Ok(Json(UserView::with_profile(&state, u).await?))
}

#[utoipa::path(get, path = "/v1/users/by-handle/{handle}", tag = "users", security(("bearer" = [])), params(("handle" = String, Path, description = "handle, any case")),
    responses((status = 200, description = "the user", body = UserView), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "unknown handle", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn by_handle(
    State(state): State<AppState>,
    _: AuthUser,
    Path(handle): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    let u = state.graph.user_by_handle(&handle).await?;
    Ok(Json(UserView::with_profile(&state, u).await?))
}

#[utoipa::path(patch, path = "/v1/users/me", tag = "users", security(("bearer" = [])), request_body = ProfilePatch,
    responses((status = 200, description = "the updated user", body = UserView), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "invalid name or bio, or an avatar that is not an image the caller uploaded", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn update_me(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    JsonBody(b): JsonBody<ProfilePatch>,
) -> Result<Json<UserView>, ApiError> {
    let avatar = match b.avatar {
        Some(Some(m)) => {
            let id = parse_id(&m)?;
            match state.posts.media(id).await? {
                Some(r) if r.owner == me && r.content_type.starts_with("image/") => Some(Some(id)),
                _ => {
                    return Err(ApiError::Invalid(
                        "avatar: not an image the caller uploaded".into(),
                    ));
                }
            }
        }
        Some(None) => Some(None),
        None => None,
    };
    if let Some(bio) = &b.bio {
        starling_graph::profile::check_bio(bio)?;
    }
    let u = match b.display_name {
        Some(name) => state.graph.set_display_name(me, &name).await?,
        None => state.graph.user(me).await?,
    };
    if b.bio.is_some() || avatar.is_some() {
        state
            .graph
            .set_profile(me, b.bio.as_deref(), avatar)
            .await?;
    }
    Ok(Json(UserView::with_profile(&state, u).await?))
}
