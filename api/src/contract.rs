//! The parts of the OpenAPI document every operation shares: one problem+json response
//! component per error status (referenced, never copied), the schemas of ids, and the rule that
//! lists on each operation the statuses the layers around every handler can answer.
//!
//! Handlers declare what is particular to them (`(status = 404, description = "unknown user",
//! …)`); [`SharedResponses`] then makes each such problem response a reference to its component
//! (keeping the handler's description) and adds what the router's layers answer anyway:
//! 400 for a malformed path or query parameter or body, 401 on an operation that takes a token,
//! 413 and 422 on a JSON body, 503 (the request deadline, an unreachable owner) everywhere.
//! It also keeps two properties SDK generators rely on: operation ids are unique (a handler's
//! name repeated in another module, `create`, becomes `<tag>_create`), and a parameter is never
//! nullable (a query or header value is a string or absent, never `null`). A path parameter
//! named `id` or `user` that a handler declares as a bare string is an [`Id`]: every such segment
//! goes through `extract::parse_id`.
//! So an operation added later is described as exactly as those already there.

use utoipa::Modify;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{Operation, ParameterIn};
use utoipa::openapi::schema::{ObjectBuilder, Schema, SchemaType, Type};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, Response, ResponseBuilder};

/// The pattern of an id: a 64-bit integer as a decimal string. At most 19 digits, so every
/// string it matches is below 2^64 (ids are below 2^63).
pub const ID_PATTERN: &str = "^[0-9]{1,19}$";

/// An id (of a user, post, media, request or conversation): a decimal string.
#[derive(Debug, utoipa::ToSchema)]
#[schema(value_type = String, pattern = "^[0-9]{1,19}$", example = "7203311504062464")]
pub struct Id(pub String);

/// Bytes of a body (media, a raw store value): `{"type": "string", "format": "binary"}`, not an
/// array of integers.
#[derive(Debug, utoipa::ToSchema)]
#[schema(value_type = String, format = Binary)]
pub struct Binary(pub Vec<u8>);

/// The problem+json media type of every error.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The shared error responses: (status, component name, description).
pub const PROBLEMS: [(u16, &str, &str); 12] = [
    (
        400,
        "BadRequest",
        "Malformed request: a path or query parameter that is not what the schema says (a repeated query parameter included), a body that is not JSON, or a body without its Content-Type.",
    ),
    (
        401,
        "Unauthorized",
        "No token, or a token that is not valid (unknown, expired, revoked). `Authorization: Bearer <token>`, the scheme in any case.",
    ),
    (
        403,
        "Forbidden",
        "Authenticated, but not allowed (a block, a role, not a member).",
    ),
    (404, "NotFound", "No such resource."),
    (
        409,
        "Conflict",
        "Conflicts with the current state (a taken handle, a request in progress); the detail says which.",
    ),
    (
        410,
        "Gone",
        "The resource was there and is no more, for good.",
    ),
    (
        413,
        "PayloadTooLarge",
        "The body is over the route's limit.",
    ),
    (
        415,
        "UnsupportedMediaType",
        "A body of a content type the route does not take.",
    ),
    (
        416,
        "RangeNotSatisfiable",
        "No byte of the requested range is in the resource; `Content-Range: bytes */<size>` gives its size.",
    ),
    (
        422,
        "UnprocessableContent",
        "Well-formed JSON that is not valid: a missing or unknown field, a wrong type, a value out of its range, or a reference to something that does not exist.",
    ),
    (
        429,
        "TooManyRequests",
        "Over the rate limit; `Retry-After` says in how many seconds to retry.",
    ),
    (
        503,
        "ServiceUnavailable",
        "The request was not done within its deadline, or a region or the database it needs is unreachable; `Retry-After` says when to retry.",
    ),
];

/// The component name of a shared problem response.
fn component_of(status: u16) -> Option<&'static str> {
    PROBLEMS
        .iter()
        .find(|(s, _, _)| *s == status)
        .map(|(_, n, _)| *n)
}

fn problem_example(status: u16, detail: &str) -> serde_json::Value {
    let title = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error");
    serde_json::json!({"type": "about:blank", "title": title, "status": status, "detail": detail})
}

fn problem_response(status: u16, description: &str) -> Response {
    let example_detail = match status {
        400 => "\"12a\" is not an id",
        401 => "missing or invalid token",
        404 => "user not found",
        422 => "text is 1 to 5000 characters, not only spaces",
        429 => "too many requests; retry later",
        503 => "the request took too long",
        _ => description,
    };
    let mut content = Content::new(Some(Ref::from_schema_name("Problem")));
    content.example = Some(problem_example(status, example_detail));
    let mut b = ResponseBuilder::new()
        .description(description)
        .content(PROBLEM_JSON, content);
    let integer = || ObjectBuilder::new().schema_type(Type::Integer).build();
    match status {
        401 => {
            b = b.header(
                "WWW-Authenticate",
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String).build())
                    .description(Some("`Bearer`"))
                    .build(),
            );
        }
        429 | 503 => {
            b = b.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(integer())
                    .description(Some("seconds"))
                    .build(),
            );
        }
        _ => {}
    }
    b.build()
}

/// Registers the shared problem responses and the `admin` security scheme, and attaches the
/// statuses of the router's layers to every operation (see the module's doc).
#[derive(Debug)]
pub struct SharedResponses;

impl Modify for SharedResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for (status, name, description) in PROBLEMS {
            components
                .responses
                .insert(name.into(), RefOr::T(problem_response(status, description)));
        }
        let mut ids = std::collections::HashMap::<String, usize>::new();
        // The per-user write limits' 429 on the writes they limit (`write_limits`).
        if let Some(name) = component_of(429) {
            for (path, item) in openapi.paths.paths.iter_mut() {
                for (method, op) in [
                    (axum::http::Method::POST, &mut item.post),
                    (axum::http::Method::PUT, &mut item.put),
                    (axum::http::Method::DELETE, &mut item.delete),
                ] {
                    if let Some(op) = op
                        && crate::write_limits::write_of(&method, path).is_some()
                    {
                        op.responses
                            .responses
                            .entry("429".into())
                            .or_insert_with(|| {
                                RefOr::Ref(Ref::new(format!("#/components/responses/{name}")))
                            });
                    }
                }
            }
        }
        for op in operations(openapi) {
            attach(op);
            not_nullable(op);
            if let Some(id) = &op.operation_id {
                *ids.entry(id.clone()).or_default() += 1;
            }
        }
        for op in operations(openapi) {
            let Some(id) = &op.operation_id else { continue };
            if ids.get(id).is_some_and(|n| *n > 1) {
                let tag = op.tags.iter().flatten().next().cloned().unwrap_or_default();
                op.operation_id = Some(format!("{tag}_{id}"));
            }
        }
    }
}

/// Every operation of the document.
fn operations(openapi: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
            &mut item.head,
            &mut item.options,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// Drops `null` from the types of an operation's parameters (`Option<T>` fields of query
/// structs): absent is how a parameter is left out. Makes a bare-string `id` or `user` path
/// parameter an [`Id`].
fn not_nullable(op: &mut Operation) {
    for p in op.parameters.iter_mut().flatten() {
        let bare_string = matches!(&p.schema, Some(RefOr::T(Schema::Object(o)))
            if o.schema_type == SchemaType::Type(Type::String) && o.pattern.is_none());
        if p.parameter_in == ParameterIn::Path
            && ["id", "user"].contains(&p.name.as_str())
            && bare_string
        {
            p.schema = Some(RefOr::Ref(Ref::from_schema_name("Id")));
        }
        if let Some(RefOr::T(Schema::Object(o))) = &mut p.schema
            && let SchemaType::Array(types) = &o.schema_type
        {
            let kept: Vec<Type> = types
                .iter()
                .filter(|t| **t != Type::Null)
                .cloned()
                .collect();
            if let [one] = kept.as_slice() {
                o.schema_type = SchemaType::Type(one.clone());
            }
        }
    }
}

/// Whether an operation's security names `scheme`.
fn requires(op: &Operation, scheme: &str) -> bool {
    op.security.iter().flatten().any(|r| {
        serde_json::to_value(r)
            .ok()
            .and_then(|v| v.as_object().map(|o| o.contains_key(scheme)))
            .unwrap_or(false)
    })
}

fn attach(op: &mut Operation) {
    let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let json_body = op
        .request_body
        .as_ref()
        .is_some_and(|b| b.content.contains_key("application/json"));
    let any_body = op.request_body.is_some();
    let token = requires(op, "bearer") || requires(op, "admin");
    let responses = &mut op.responses.responses;
    // A handler's own problem responses become references, with its own description.
    for (status, resp) in responses.iter_mut() {
        let RefOr::T(r) = resp else { continue };
        let Some(name) = status.parse().ok().and_then(component_of) else {
            continue;
        };
        if r.content.keys().any(|k| k == PROBLEM_JSON) || r.content.is_empty() {
            let mut reference = Ref::new(format!("#/components/responses/{name}"));
            reference.description = std::mem::take(&mut r.description);
            *resp = RefOr::Ref(reference);
        }
    }
    let mut add = |status: u16| {
        if let Some(name) = component_of(status) {
            responses
                .entry(status.to_string())
                .or_insert_with(|| RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))));
        }
    };
    if has_params || any_body {
        add(400);
    }
    if token {
        add(401);
    }
    if json_body {
        add(413);
        add(422);
    }
    add(503);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_one_component() {
        let mut seen = std::collections::HashSet::new();
        for (status, name, _) in PROBLEMS {
            assert!(seen.insert(status), "{status} twice");
            assert_eq!(component_of(status), Some(name));
        }
        // The largest id the pattern admits still parses.
        assert!(crate::extract::parse_id(&"9".repeat(19)).is_ok());
    }
}
