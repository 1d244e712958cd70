//! Operator endpoints, behind the admin token: the cluster view, the simulated WAN table, the
//! replica's digest (to compare replicas), and raw key inspection. Without a configured admin
//! token they all answer 403.

use crate::AppState;
use crate::extract::{Path, RawBody};
use crate::problem::ApiError;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use starling_gossip::WanLink;
use starling_store::{Key, StoreExt};

/// `/v1/cluster`, `/v1/admin/wan`, `/v1/admin/digest`, `/v1/admin/kv/{key}`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/cluster", get(cluster))
        .route("/v1/admin/wan", get(get_wan).put(put_wan))
        .route("/v1/admin/digest", get(digest))
        .route("/v1/admin/kv/{key}", get(get_kv).put(put_kv))
}

/// Checks `Authorization: Bearer <admin token>` (the scheme in any case) in constant time.
fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.admin_token.as_deref() else {
        return Err(ApiError::Forbidden(
            "admin endpoints are disabled: no admin token is configured",
        ));
    };
    let given = crate::auth::bearer_token(headers).ok_or(ApiError::Unauthorized)?;
    let (a, b) = (given.as_bytes(), expected.as_bytes());
    let same = a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
    if same {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
#[schema(as = ClusterMember)]
pub(crate) struct MemberView {
    id: String,
    region: String,
    addr: String,
    state: String,
}

#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub(crate) struct ClusterView {
    node: String,
    region: String,
    members: Vec<MemberView>,
}

#[utoipa::path(get, path = "/v1/cluster", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "this node and the cluster's members as gossip sees them", body = ClusterView), (status = 403, description = "admin endpoints are disabled: the node has no admin token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn cluster(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<ClusterView>, ApiError> {
    require_admin(&state, &headers)?;
    let me = state.store.node();
    let members = state
        .gossip
        .as_ref()
        .map(|g| g.membership())
        .unwrap_or_default()
        .into_iter()
        .map(|(p, state)| MemberView {
            id: p.node.to_string(),
            region: p.region,
            addr: p.addr,
            state: state.as_str().into(),
        })
        .collect();
    Ok(Json(ClusterView {
        node: me.to_string(),
        region: state.region.clone(),
        members,
    }))
}

fn gossip(state: &AppState) -> Result<&starling_gossip::GossipHandle, ApiError> {
    state
        .gossip
        .as_ref()
        .ok_or(ApiError::NotFound("this node runs without gossip"))
}

#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub(crate) struct WanTable {
    #[schema(value_type = Vec<WanLinkView>)]
    links: Vec<WanLink>,
}

/// One direction of a simulated link between two regions (the wire form of
/// [`starling_gossip::WanLink`], for the document).
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)] // a schema only: the handlers (de)serialize `WanLink` itself
pub(crate) struct WanLinkView {
    /// Sending region.
    from: String,
    /// Receiving region.
    to: String,
    /// One-way latency in milliseconds.
    #[schema(minimum = 0)]
    latency_ms: u64,
    /// Uniform jitter added to the latency, in milliseconds.
    #[schema(minimum = 0)]
    jitter_ms: u64,
    /// Probability in [0, 1] that a message is lost.
    #[schema(minimum = 0, maximum = 1)]
    loss: f64,
    /// Whether the link is cut.
    partitioned: bool,
}

#[utoipa::path(get, path = "/v1/admin/wan", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "the simulated WAN table", body = WanTable), (status = 403, description = "admin endpoints are disabled: the node has no admin token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "this node runs without gossip", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn get_wan(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<WanTable>, ApiError> {
    require_admin(&state, &headers)?;
    let g = gossip(&state)?;
    Ok(Json(WanTable {
        links: g.wan().links(),
    }))
}

#[utoipa::path(put, path = "/v1/admin/wan", tag = "admin", security(("admin" = [])), request_body = WanTable,
    responses((status = 200, description = "the table now in force", body = WanTable), (status = 400, description = "not a WAN table", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 403, description = "admin endpoints are disabled: the node has no admin token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "this node runs without gossip", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 422, description = "an invalid link (loss outside [0, 1], an unknown region)", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn put_wan(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Json<WanTable>, ApiError> {
    require_admin(&state, &headers)?;
    let g = gossip(&state)?;
    let table: WanTable = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("WAN table: {e}")))?;
    g.set_wan(table.links)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok(Json(WanTable {
        links: g.wan().links(),
    }))
}

/// The replica's anti-entropy digest: equal roots mean byte-identical replicated data
/// (node-local keys are not in it). Fault tests compare it across nodes after a heal.
#[derive(Serialize, Deserialize, Debug, utoipa::ToSchema)]
pub(crate) struct DigestView {
    node: String,
    region: String,
    /// The root of the digest tree, 16 hex digits.
    root: String,
    /// The 64 range digests anti-entropy exchanges first, 16 hex digits each.
    ranges: Vec<String>,
    /// Buckets whose digest is not zero (of 4096): about those holding keys.
    buckets_used: usize,
}

#[utoipa::path(get, path = "/v1/admin/digest", tag = "admin", security(("admin" = [])),
    responses((status = 200, description = "the replica's anti-entropy digest", body = DigestView), (status = 403, description = "admin endpoints are disabled: the node has no admin token", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn digest(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<DigestView>, ApiError> {
    require_admin(&state, &headers)?;
    let tree = state.store.digests();
    Ok(Json(DigestView {
        node: state.store.node().to_string(),
        region: state.region.clone(),
        root: format!("{:016x}", tree.root()),
        ranges: tree.level(6).iter().map(|d| format!("{d:016x}")).collect(),
        buckets_used: tree.leaves().iter().filter(|d| **d != 0).count(),
    }))
}

#[utoipa::path(get, path = "/v1/admin/kv/{key}", tag = "admin", security(("admin" = [])), params(("key" = String, Path, description = "a raw store key (UTF-8)")),
    responses((status = 200, description = "the value's bytes", body = crate::contract::Binary, content_type = "application/octet-stream"), (status = 403, description = "admin endpoints are disabled: the node has no admin token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 404, description = "no value at this key", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 413, description = "the key is over the store's limit", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn get_kv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Bytes, ApiError> {
    require_admin(&state, &headers)?;
    let v = state.store.get(&Key::from(key.as_str())).await?;
    v.and_then(|v| v.value)
        .ok_or(ApiError::NotFound("no value at this key"))
}

#[utoipa::path(put, path = "/v1/admin/kv/{key}", tag = "admin", security(("admin" = [])), params(("key" = String, Path, description = "a raw store key (UTF-8)")),
    request_body(content = Option<crate::contract::Binary>, description = "the value's bytes (up to 64 KiB; none: an empty value)", content_type = "application/octet-stream"),
    responses((status = 204, description = "stored (and held in the configured number of regions)"), (status = 403, description = "admin endpoints are disabled: the node has no admin token", body = crate::problem::Problem, content_type = "application/problem+json"), (status = 413, description = "the key or the value is over the store's limit", body = crate::problem::Problem, content_type = "application/problem+json")))]
pub(crate) async fn put_kv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
    RawBody(body): RawBody,
) -> Result<StatusCode, ApiError> {
    require_admin(&state, &headers)?;
    let key = Key::from(key.as_str());
    let version = state.store.put(&key, body).await?;
    if let Some(g) = &state.gossip {
        g.wait_durable(key, version, state.durable_regions)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
    }
    Ok(StatusCode::NO_CONTENT)
}
