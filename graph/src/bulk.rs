//! Bulk loading of synthetic graphs (`starling seed`): the writes of users and follow edges,
//! built without the per-request work of the API path — handles are known unique, followees
//! known to exist, and every seeded user shares one password hash (hashing a million passwords
//! with argon2id would take hours, by design) — and written in batches with one durability wait
//! each ([`Graph::bulk_write`]). Only for a store that no node serves while it loads. Derived
//! state (follower counts) is then brought up by the usual consumer.

use crate::keys::{self, CREDENTIALS, FOLLOWERS, FOLLOWING, HANDLES, pair};
use crate::users::{UserRecord, normalize_handle};
use crate::{Graph, GraphError};
use bytes::Bytes;
use starling_store::{Key, Mutation};

impl Graph {
    /// The argon2id hash every seeded user shares.
    pub async fn seed_password_hash(&self, password: &str) -> Result<Bytes, GraphError> {
        Ok(Bytes::from(self.hash_password(password.to_string()).await?))
    }

    /// The writes of a user with a handle known to be free.
    pub fn bulk_user(
        id: u64,
        handle: &str,
        region: &str,
        phc: &Bytes,
        created_at_ms: u64,
    ) -> Result<[(Key, Mutation); 3], GraphError> {
        let handle = normalize_handle(handle)?;
        let rec = UserRecord {
            id,
            display_name: handle.clone(),
            handle: handle.clone(),
            region: region.to_string(),
            created_at_ms,
        };
        let value = starling_store::codec::to_value(&rec)?;
        Ok([
            (keys::user(id), Mutation::Put(value)),
            (
                CREDENTIALS.key().u64(id).finish(),
                Mutation::Put(phc.clone()),
            ),
            (
                HANDLES.key().str(&handle).finish(),
                Mutation::Put(Bytes::copy_from_slice(&id.to_be_bytes())),
            ),
        ])
    }

    /// The writes of a follow edge between two existing users (both index entries).
    pub fn bulk_follow(follower: u64, followee: u64, at_ms: u64) -> [(Key, Mutation); 2] {
        let at = Bytes::copy_from_slice(&at_ms.to_be_bytes());
        [
            (
                pair(FOLLOWERS, followee, follower),
                Mutation::Add(at.clone()),
            ),
            (pair(FOLLOWING, follower, followee), Mutation::Add(at)),
        ]
    }

    /// Writes a batch, with one wait for durability.
    pub async fn bulk_write(&self, items: &[(Key, Mutation)]) -> Result<(), GraphError> {
        Ok(self.store.mutate_many(items).await?)
    }
}
