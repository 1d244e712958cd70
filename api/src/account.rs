//! `/v1/users/me/password`, `DELETE /v1/users/me`: the caller's own account. A password change
//! needs the current password and revokes every other session of the caller (in every region,
//! as the deletes replicate); the caller's own session stays. A deletion needs the password too:
//! the account is gone at once (every session revoked, the user unknown, their notifications to
//! others hidden), and the sweeper ([`crate::deletion`]) removes their posts, follows both ways,
//! friendships, blocks and pending requests in bounded steps, then frees the handle after
//! `--handle-grace`.

use crate::AppState;
use crate::auth::AuthUser;
use crate::extract::JsonBody;
use crate::problem::ApiError;
use crate::users::Token;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, put};
use serde::Deserialize;

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PasswordChange {
    /// The current password.
    #[schema(example = "correct horse battery")]
    old: String,
    /// The new password: 8–256 characters.
    #[schema(min_length = 8, max_length = 256, example = "correct horse battery")]
    new: String,
}

#[derive(Deserialize, Debug, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AccountDeletion {
    /// The account's password.
    #[schema(example = "correct horse battery")]
    password: String,
}

/// The routes of this module.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/users/me/password", put(change_password))
        .route("/v1/users/me", delete(delete_me))
}

#[utoipa::path(put, path = "/v1/users/me/password", tag = "users", security(("bearer" = [])), request_body = PasswordChange,
    responses((status = 204, description = "changed; every other session of the caller is revoked"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "wrong current password; nothing changed", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "the new password is not 8 to 256 characters", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn change_password(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    Token(token): Token,
    JsonBody(b): JsonBody<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let revoked = state
        .graph
        .change_password(me, &token, &b.old, &b.new)
        .await?;
    tracing::info!(user = me, revoked, "password changed");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(delete, path = "/v1/users/me", tag = "users", security(("bearer" = [])), request_body = AccountDeletion,
    responses((status = 204, description = "deleted: every session is revoked and the user reads as unknown at once; posts, follows both ways, friendships, blocks and pending friend requests are removed in the background; the handle is freed after the node's grace period"), (status = 401, description = "no or bad token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "wrong password; nothing changed", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn delete_me(
    State(state): State<AppState>,
    AuthUser(me): AuthUser,
    JsonBody(b): JsonBody<AccountDeletion>,
) -> Result<StatusCode, ApiError> {
    state.graph.delete_account(me, &b.password).await?;
    tracing::info!(user = me, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}
