//! The OpenAPI 3 document, generated from the handlers' annotations and the wire types, served
//! at `/openapi.json`.

use crate::{AppState, posts, social, users};
use axum::Json;
use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Starling",
        description = "A multi-region social network backend. Ids are 64-bit integers sent as decimal strings; times are RFC 3339 in UTC; errors are application/problem+json.",
        version = "1"
    ),
    paths(
        users::sign_up, users::login, users::logout, users::get_user, users::get_me,
        users::by_handle, users::update_me,
        social::follow, social::unfollow, social::followers, social::following,
        social::request_friend, social::accept_friend, social::friends, social::block,
        social::unblock,
        posts::create, posts::read, posts::edit, posts::remove, posts::by_author,
        posts::upload, posts::download,
        crate::likes::like, crate::likes::unlike, crate::likes::likers,
        crate::feed::feed,
        crate::conversations::create, crate::conversations::list,
        crate::conversations::messages, crate::conversations::send,
        crate::conversations::read, crate::conversations::update,
        crate::conversations::add_member, crate::conversations::remove_member,
        crate::conversations::set_role, crate::conversations::mark_read,
        crate::conversations::edit_message, crate::conversations::delete_message,
    ),
    components(schemas(crate::problem::Problem)),
    modifiers(&Bearer),
    tags(
        (name = "users", description = "Sign-up, sessions, profiles"),
        (name = "graph", description = "Follows, friends, blocks"),
        (name = "posts", description = "Posts and media"),
        (name = "chat", description = "Conversations and messages (live delivery: the WebSocket at /v1/ws)"),
    )
)]
struct ApiDoc;

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `/openapi.json` (no token needed).
pub fn routes() -> Router<AppState> {
    let doc = document();
    Router::new().route(
        "/openapi.json",
        get(move || async move { Json(doc.clone()) }),
    )
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
            ("/v1/friend-requests", &["post"]),
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
