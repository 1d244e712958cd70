//! The OpenAPI 3.1 document, generated from the handlers' annotations and the wire types, served
//! at `/openapi.json`: every route the router serves (a test holds it to that), the statuses of
//! the shared layers attached by [`crate::contract::SharedResponses`]. The WebSocket's frames
//! are in the AsyncAPI document (`docs/asyncapi.json`).

use crate::contract::SharedResponses;
use crate::{AppState, posts, social, users};
use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::LazyLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Starling",
        description = "A multi-region social network backend. Ids are 64-bit integers sent as decimal strings; times are RFC 3339 in UTC; every error is application/problem+json (RFC 9457), the router's own 404 and 405 included. Lists are pages: `next_cursor` in the body and a `Link: <…>; rel=\"next\"` header while there is more.",
        version = "1"
    ),
    paths(
        users::sign_up, users::login, users::logout, users::get_user, users::get_me,
        users::by_handle, users::update_me, crate::account::change_password,
        crate::account::delete_me,
        social::follow, social::unfollow, social::followers, social::following,
        social::request_friend, social::accept_friend,
        social::list_friend_requests, social::decline_friend, social::cancel_friend,
        social::friends, social::block, social::unblock,
        posts::create, posts::read, posts::edit, posts::remove, posts::by_author,
        posts::upload, posts::download, posts::media_url,
        crate::likes::like, crate::likes::unlike, crate::likes::likers, crate::threads::thread,
        crate::likes::repost, crate::likes::unrepost, crate::likes::reposters,
        crate::feed::feed,
        crate::notifications::list, crate::notifications::mark_read,
        crate::conversations::create, crate::conversations::list,
        crate::conversations::messages, crate::conversations::send,
        crate::conversations::read, crate::conversations::update,
        crate::conversations::add_member, crate::conversations::remove_member,
        crate::conversations::set_role, crate::conversations::mark_read,
        crate::conversations::edit_message, crate::conversations::delete_message,
        crate::ws::upgrade,
        openapi_json, crate::ops::healthz, crate::ops::readyz, crate::metrics::metrics,
        crate::admin::cluster, crate::admin::get_wan, crate::admin::put_wan,
        crate::admin::digest, crate::admin::get_kv, crate::admin::put_kv,
    ),
    components(schemas(crate::problem::Problem, crate::contract::Id, crate::contract::Binary)),
    modifiers(&Bearer, &SharedResponses),
    tags(
        (name = "users", description = "Sign-up, sessions, profiles"),
        (name = "graph", description = "Follows, friends, blocks"),
        (name = "posts", description = "Posts and media"),
        (name = "notifications", description = "What happened to the caller (live: a `notification` frame on the WebSocket at /v1/ws)"),
        (name = "chat", description = "Conversations and messages (live delivery: the WebSocket at /v1/ws)"),
        (name = "ops", description = "Liveness, readiness, metrics (no token)"),
        (name = "admin", description = "Operator endpoints, behind the node's admin token (`--admin-token`); 403 on a node without one"),
    )
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token from `POST /v1/users` or `POST /v1/sessions`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "admin",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("The node's admin token (`--admin-token`)."))
                    .build(),
            ),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The document as served, serialized once.
static SERVED: LazyLock<Bytes> = LazyLock::new(|| {
    serde_json::to_vec(&document())
        .map(Bytes::from)
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "the OpenAPI document does not serialize");
            Bytes::new()
        })
});

/// `/openapi.json` (no token needed).
pub fn routes() -> Router<AppState> {
    Router::new().route("/openapi.json", get(openapi_json))
}

#[utoipa::path(get, path = "/openapi.json", tag = "ops",
    responses((status = 200, description = "this document (OpenAPI 3.1)", body = Object, content_type = "application/json")))]
pub(crate) async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], SERVED.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_every_endpoint_of_api_md() {
        let doc = serde_json::to_value(document()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for (path, methods) in [
            ("/v1/users", &["post"][..]),
            ("/v1/sessions", &["post", "delete"]),
            ("/v1/users/{id}", &["get"]),
            ("/v1/users/by-handle/{handle}", &["get"]),
            ("/v1/users/me", &["patch", "get"]),
            ("/v1/following/{id}", &["put", "delete"]),
            ("/v1/users/{id}/followers", &["get"]),
            ("/v1/users/{id}/following", &["get"]),
            ("/v1/friend-requests", &["post", "get"]),
            ("/v1/friend-requests/{id}", &["delete"]),
            ("/v1/friend-requests/{id}/decline", &["post"]),
            ("/v1/friend-requests/{id}/accept", &["post"]),
            ("/v1/friends", &["get"]),
            ("/v1/blocks/{id}", &["put", "delete"]),
            ("/v1/posts", &["post"]),
            ("/v1/posts/{id}", &["get", "patch", "delete"]),
            ("/v1/users/{id}/posts", &["get"]),
            ("/v1/media", &["post"]),
            ("/v1/media/{id}", &["get"]),
            ("/v1/feed", &["get"]),
            ("/v1/posts/{id}/like", &["put", "delete"]),
            ("/v1/posts/{id}/likes", &["get"]),
            ("/v1/posts/{id}/repost", &["put", "delete"]),
            ("/v1/posts/{id}/reposts", &["get"]),
            ("/v1/posts/{id}/thread", &["get"]),
            ("/v1/conversations", &["get", "post"]),
            ("/v1/conversations/{id}/messages", &["get", "post"]),
        ] {
            let p = paths.get(path).unwrap_or_else(|| panic!("{path} missing"));
            for m in methods {
                assert!(p.get(*m).is_some(), "{m} {path} missing");
            }
        }
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    }
}
