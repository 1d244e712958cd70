//! Operator endpoints, behind the admin token: the cluster view, the simulated WAN table, the
//! replica's digest (to compare replicas), and raw key inspection. Without a configured admin
//! token they all answer 403.

use crate::AppState;
use crate::json::{Path, RawBody};
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

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct MemberView {
    id: String,
    region: String,
    addr: String,
    state: String,
}

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct ClusterView {
    node: String,
    region: String,
    members: Vec<MemberView>,
}

async fn cluster(
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

#[derive(Serialize, Deserialize, Debug)]
pub(crate) struct WanTable {
    links: Vec<WanLink>,
}

async fn get_wan(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<WanTable>, ApiError> {
    require_admin(&state, &headers)?;
    let g = gossip(&state)?;
    Ok(Json(WanTable {
        links: g.wan().links(),
    }))
}

async fn put_wan(
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
#[derive(Serialize, Deserialize, Debug)]
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

async fn digest(
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

async fn get_kv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Result<Bytes, ApiError> {
    require_admin(&state, &headers)?;
    let v = state.store.get(&Key::from(key.as_str())).await?;
    v.and_then(|v| v.value)
        .ok_or(ApiError::NotFound("no value at this key"))
}

async fn put_kv(
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
