//! Bulk loading of synthetic graphs (`starling seed`): the keys of users, follow edges and their
//! derived counts, laid out as ascending runs for [`starling_store::Store::bulk_load`].
//!
//! Handles are known unique, followees known to exist, and every seeded user shares one
//! password hash (hashing a million passwords with argon2id would take hours, by design). The
//! derived state a consumer would compute is written with the load — follower and following
//! counts, and the shadow of every edge saying it was counted — so a node serves the loaded
//! graph at once, and later follows and unfollows move the counts as usual.

use crate::counts::{COUNTS, LOADED, count_key};
use crate::keys::{CREDENTIALS, FOLLOWERS, FOLLOWING, HANDLES, USERS, pair};
use crate::users::{UserRecord, normalize_handle};
use crate::{Graph, GraphError};
use bytes::Bytes;
use starling_store::{BulkRun, Dot, Key, Keyspace, Mutation};

impl Graph {
    /// The argon2id hash every seeded user shares, salted from `seed` so that the same seed
    /// gives the same bytes.
    pub async fn seed_password_hash(&self, password: &str, seed: u64) -> Result<Bytes, GraphError> {
        let salt = format!("starling-seed-{seed:016x}").into_bytes();
        Ok(Bytes::from(
            self.hash_password_salted(password.to_string(), salt)
                .await?,
        ))
    }
}

/// Adjacency lists of users numbered `0..n`: the targets of user `i` are
/// `targets[offsets[i]..offsets[i + 1]]`, ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adjacency {
    /// Where each user's list starts; `n + 1` entries.
    pub offsets: Vec<u64>,
    /// Every list, back to back.
    pub targets: Vec<u32>,
}

impl Adjacency {
    /// From per-user lists, in user order (each list ascending).
    pub fn from_lists<'a>(lists: impl IntoIterator<Item = &'a [u32]>) -> Self {
        let mut adj = Adjacency {
            offsets: vec![0],
            targets: Vec::new(),
        };
        for l in lists {
            adj.targets.extend_from_slice(l);
            adj.offsets.push(adj.targets.len() as u64);
        }
        adj
    }

    /// Number of users.
    pub fn users(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The list of user `i`.
    pub fn of(&self, i: usize) -> &[u32] {
        &self.targets[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// The reverse lists (who points at each user), ascending: a counting sort, stable, so
    /// each reverse list comes out in source order.
    pub fn transpose(&self) -> Adjacency {
        let n = self.users();
        let mut offsets = vec![0u64; n + 1];
        for t in &self.targets {
            offsets[*t as usize + 1] += 1;
        }
        for i in 1..=n {
            offsets[i] += offsets[i - 1];
        }
        let mut next = offsets.clone();
        let mut targets = vec![0u32; self.targets.len()];
        for src in 0..n {
            for t in self.of(src) {
                let slot = &mut next[*t as usize];
                targets[*slot as usize] = src as u32;
                *slot += 1;
            }
        }
        Adjacency { offsets, targets }
    }
}

/// A synthetic graph to load: user `i` has id `ids[i]` (ascending) and handle `handles[i]`.
#[derive(Debug)]
pub struct SeedGraph {
    /// User ids, ascending.
    pub ids: Vec<u64>,
    /// Handles.
    pub handles: Vec<String>,
    /// Who each user follows.
    pub following: Adjacency,
    /// Who follows each user (the transpose).
    pub followers: Adjacency,
    /// The users' region.
    pub region: String,
    /// The shared argon2id hash.
    pub phc: Bytes,
    /// Creation and follow time, ms.
    pub at_ms: u64,
}

impl SeedGraph {
    /// The runs of a load stamped `dot`: users, credentials, handles, both edge indexes, the
    /// counts and the marker of the load.
    pub fn runs(&self, dot: Dot) -> Result<Vec<BulkRun<'_>>, GraphError> {
        let n = self.ids.len();
        let normalized = self
            .handles
            .iter()
            .map(|h| normalize_handle(h))
            .collect::<Result<Vec<String>, _>>()?;
        let mut handles: Vec<(String, u64)> = normalized
            .iter()
            .cloned()
            .zip(self.ids.iter().copied())
            .collect();
        handles.sort_unstable();
        let at = Bytes::copy_from_slice(&self.at_ms.to_be_bytes());
        let mut runs = vec![
            BulkRun::new(
                USERS.prefix(),
                normalized.into_iter().enumerate().map(|(i, handle)| {
                    let rec = UserRecord {
                        id: self.ids[i],
                        display_name: handle.clone(),
                        handle,
                        region: self.region.clone(),
                        created_at_ms: self.at_ms,
                    };
                    let value = starling_store::codec::to_value(&rec)?;
                    ok(crate::keys::user(self.ids[i]), Mutation::Put(value))
                }),
            ),
            BulkRun::new(
                CREDENTIALS.prefix(),
                self.ids.iter().map(|id| {
                    ok(
                        CREDENTIALS.key().u64(*id).finish(),
                        Mutation::Put(self.phc.clone()),
                    )
                }),
            ),
            BulkRun::new(
                HANDLES.prefix(),
                handles.into_iter().map(|(h, id)| {
                    let v = Bytes::copy_from_slice(&id.to_be_bytes());
                    ok(HANDLES.key().str(&h).finish(), Mutation::Put(v))
                }),
            ),
            BulkRun::new(
                COUNTS.prefix(),
                (0..n).flat_map(move |i| {
                    let id = self.ids[i];
                    [
                        (count_key(id, "followers"), self.followers.of(i).len()),
                        (count_key(id, "following"), self.following.of(i).len()),
                    ]
                    .into_iter()
                    .filter(|(_, c)| *c > 0)
                    .map(|(k, c)| ok(k, Mutation::Count(c as i64)))
                }),
            ),
        ];
        for (ks, adj) in [(FOLLOWERS, &self.followers), (FOLLOWING, &self.following)] {
            runs.push(BulkRun::new(
                ks.prefix(),
                edges(&self.ids, ks, adj, Mutation::Add(at.clone())).map(Ok),
            ));
        }
        runs.push(starling_store::counted::load_marker(LOADED, &dot)?);
        Ok(runs)
    }
}

fn ok(k: Key, m: Mutation) -> starling_store::Result<(Key, Mutation)> {
    Ok((k, m))
}

/// The edge keys of `adj` in keyspace `ks` (owner first), each with mutation `m`.
fn edges<'a>(
    ids: &'a [u64],
    ks: Keyspace,
    adj: &'a Adjacency,
    m: Mutation,
) -> impl Iterator<Item = (Key, Mutation)> + Send + 'a {
    (0..adj.users()).flat_map(move |a| {
        let m = m.clone();
        adj.of(a)
            .iter()
            .map(move |b| (pair(ks, ids[a], ids[*b as usize]), m.clone()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::users::tests::graph;
    use starling_store::{Delta, Hlc, NodeId, load_runs};

    /// Users 0..4: 0 follows 1 and 2, 1 follows 2, 3 follows 0, 1 and 2.
    fn seed_graph(ids: Vec<u64>) -> SeedGraph {
        let lists: Vec<Vec<u32>> = vec![vec![1, 2], vec![2], vec![], vec![0, 1, 2]];
        let following = Adjacency::from_lists(lists.iter().map(Vec::as_slice));
        SeedGraph {
            handles: (0..ids.len()).map(|i| format!("user{i}")).collect(),
            ids,
            followers: following.transpose(),
            following,
            region: "us".into(),
            phc: Bytes::from_static(b"$argon2id$stub"),
            at_ms: 1_767_225_600_000,
        }
    }

    #[tokio::test]
    async fn loaded_counts_are_served_and_move_with_later_changes() {
        let g = graph();
        let ids = vec![101, 102, 103, 104];
        let seed = seed_graph(ids.clone());
        let dot = Dot {
            hlc: Hlc::new(seed.at_ms, 0),
            node: NodeId::from_names("us", "seed"),
        };
        let mut load = g.store().bulk_load(dot).unwrap();
        load_runs(load.as_mut(), seed.runs(dot).unwrap(), &mut |_| {}).unwrap();
        load.finish().unwrap();

        let count = |id, which| g.count_of(id, which);
        assert_eq!(count(103, "followers").await.unwrap(), 3);
        assert_eq!(count(104, "following").await.unwrap(), 3);
        assert_eq!(count(103, "following").await.unwrap(), 0);
        assert_eq!(g.user(101).await.unwrap().handle, "user0");
        assert!(g.is_following(104, 101).await.unwrap());

        // An unfollow of a loaded edge (no shadow) moves the count down once, even when the
        // consumer sees it again; a new follow moves it up.
        g.unfollow(104, 103).await.unwrap();
        g.catch_up_counts().await.unwrap();
        assert_eq!(count(103, "followers").await.unwrap(), 2);
        assert_eq!(count(104, "following").await.unwrap(), 2);
        g.follow(103, 101).await.unwrap();
        assert_eq!(count(101, "followers").await.unwrap(), 2);

        // A node that was not loaded counts the same edges as they replicate in.
        let other = graph();
        let mut deltas = Vec::new();
        for ks in [FOLLOWERS, FOLLOWING] {
            let page = g
                .store()
                .scan(&starling_store::ScanRequest::prefix(ks.prefix(), 100))
                .await
                .unwrap();
            for (key, _) in page.items {
                let record = g.store().get_record(&key).await.unwrap().unwrap();
                deltas.push(Delta { key, record });
            }
        }
        other.store().apply(&deltas).await.unwrap();
        other.catch_up_counts().await.unwrap();
        for id in &ids {
            for which in ["followers", "following"] {
                assert_eq!(
                    other.count_of(*id, which).await.unwrap(),
                    g.count_of(*id, which).await.unwrap(),
                    "{id} {which}"
                );
            }
        }
    }

    #[test]
    fn transpose_reverses_every_edge_in_order() {
        let lists: Vec<Vec<u32>> = vec![vec![1, 2], vec![2], vec![0, 1], vec![]];
        let adj = Adjacency::from_lists(lists.iter().map(Vec::as_slice));
        let rev = adj.transpose();
        assert_eq!(rev.of(0), &[2]);
        assert_eq!(rev.of(1), &[0, 2]);
        assert_eq!(rev.of(2), &[0, 1]);
        assert_eq!(rev.of(3), &[] as &[u32]);
        assert_eq!(rev.transpose(), adj);
    }
}
