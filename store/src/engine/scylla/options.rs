//! Where the ScyllaDB engine connects and how: parsed from one URL,
//! `scylla://HOST:PORT[,HOST:PORT…]/KEYSPACE[?replication=…&consistency=…&writers=…]`.

use crate::contract::Limits;
use crate::error::{Result, StoreError};
use std::time::Duration;

/// Replication of the keyspace, used when the engine creates it (an existing keyspace is left as
/// it is: changing replication is an operator's `ALTER KEYSPACE` plus a repair).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy` with a replication factor (tests, one data centre).
    Simple(u32),
    /// `NetworkTopologyStrategy` with a factor per data centre (production).
    NetworkTopology(Vec<(String, u32)>),
}

impl Replication {
    /// The CQL map literal of `WITH replication = …`.
    pub(crate) fn cql(&self) -> String {
        match self {
            Replication::Simple(rf) => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {rf}}}")
            }
            Replication::NetworkTopology(dcs) => {
                let mut s = String::from("{'class': 'NetworkTopologyStrategy'");
                for (dc, rf) in dcs {
                    s.push_str(&format!(", '{dc}': {rf}"));
                }
                s.push('}');
                s
            }
        }
    }
}

/// The consistency level of reads and writes (CAS uses `LOCAL_SERIAL` for its Paxos phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// One replica.
    One,
    /// One replica in the local data centre.
    LocalOne,
    /// A majority of the local data centre's replicas (the default).
    LocalQuorum,
    /// A majority of all replicas.
    Quorum,
    /// Every replica.
    All,
}

/// Who writes the keyspace, which decides how a record's read-modify-write is made safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Writers {
    /// Several Starling nodes may write the same keys: every record write is a lightweight
    /// transaction conditioned on the bytes read (`IF rec = ?` / `IF NOT EXISTS`), retried on
    /// conflict. Safe by construction; a Paxos round per write. The default.
    Shared,
    /// This node is the only writer of the keyspace: plain writes serialized by the node's key
    /// locks, with client-side monotonic timestamps. One round trip per write; two nodes writing
    /// the same keyspace in this mode lose updates.
    Single,
}

/// Options of the ScyllaDB engine.
#[derive(Clone, Debug)]
pub struct ScyllaOptions {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// The keyspace holding this replica's tables.
    pub keyspace: String,
    /// Replication used when creating the keyspace.
    pub replication: Replication,
    /// Consistency of reads and writes.
    pub consistency: Consistency,
    /// Who writes the keyspace.
    pub writers: Writers,
    /// Size limits.
    pub limits: Limits,
    /// How long start-up may try to reach the cluster before giving up with one error.
    pub connect_timeout: Duration,
    /// Per-request timeout (the driver's client-side timeout).
    pub request_timeout: Duration,
    /// Partitions of the keyspace-wide change feed when this open creates it (`None`: 32); an
    /// existing keyspace keeps its own, and asking for another number is refused.
    pub feed_partitions: Option<u32>,
    /// How often at most this node publishes how far its writes have finished (its feed mark):
    /// the floor of the keyspace feed's lag.
    pub feed_mark_interval: Duration,
    /// Whether this node's writes enter the keyspace-wide feed (true). `false` exists to measure
    /// the feed's cost (`store/benches/scylla_feed.rs`): a node without it is invisible to the
    /// keyspace feed's consumers, so never turn it off on a keyspace they read.
    pub keyspace_feed: bool,
    /// Whether [`crate::Store::digests`] describes the keyspace (`true`: the XOR of what the
    /// keyspace feed's holders publish, see `engine/scylla/kdigest.rs`; needs a
    /// [`crate::consumer::KeyspaceFeed`] running in the region) or this node's writes (`false`,
    /// the default: rebuilt by a scan at open, then moved by this node's writes). URL:
    /// `digests=keyspace|node`. A keyspace that held data before the digest tables existed keeps
    /// per-node digests.
    pub keyspace_digests: bool,
}

impl ScyllaOptions {
    /// Options for `nodes` and `keyspace` with the defaults: SimpleStrategy rf 1, LOCAL_QUORUM,
    /// shared writers.
    pub fn new(nodes: Vec<String>, keyspace: impl Into<String>) -> Self {
        ScyllaOptions {
            nodes,
            keyspace: keyspace.into(),
            replication: Replication::Simple(1),
            consistency: Consistency::LocalQuorum,
            writers: Writers::Shared,
            limits: Limits::default(),
            connect_timeout: Duration::from_secs(15),
            request_timeout: Duration::from_secs(10),
            feed_partitions: None,
            feed_mark_interval: Duration::from_millis(50),
            keyspace_feed: true,
            keyspace_digests: false,
        }
    }

    /// Parses `scylla://h1:9042,h2:9042/keyspace?replication=…&consistency=…&writers=…&partitions=…`.
    ///
    /// `replication` is `SimpleStrategy:RF` (default `SimpleStrategy:1`) or
    /// `NetworkTopologyStrategy:DC=RF[,DC=RF…]`; `consistency` is `one`, `local_one`,
    /// `local_quorum` (default), `quorum` or `all`; `writers` is `shared` (default) or `single`;
    /// `partitions` (1-4096) is the keyspace feed's partition count for a new keyspace; `digests`
    /// is `node` (default) or `keyspace` ([`ScyllaOptions::keyspace_digests`]).
    pub fn from_url(url: &str) -> Result<Self> {
        let bad = |why: &'static str| StoreError::InvalidArgument(why);
        let rest = url
            .strip_prefix("scylla://")
            .ok_or(bad("a ScyllaDB store URL starts with scylla://"))?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (hosts, keyspace) = path
            .split_once('/')
            .ok_or(bad("scylla:// URL without a /keyspace"))?;
        let nodes: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(|h| {
                if h.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
                {
                    h.to_string()
                } else {
                    format!("{h}:9042")
                }
            })
            .collect();
        if nodes.is_empty() {
            return Err(bad("scylla:// URL without a host"));
        }
        if !valid_name(keyspace) {
            return Err(bad(
                "scylla:// keyspace must be 1-48 characters of [A-Za-z0-9_], starting with a letter",
            ));
        }
        let mut o = ScyllaOptions::new(nodes, keyspace.to_ascii_lowercase());
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair
                .split_once('=')
                .ok_or(bad("scylla:// query parameters are NAME=VALUE"))?;
            match k {
                "replication" => o.replication = parse_replication(v)?,
                "consistency" => {
                    o.consistency = match v.to_ascii_lowercase().as_str() {
                        "one" => Consistency::One,
                        "local_one" => Consistency::LocalOne,
                        "local_quorum" => Consistency::LocalQuorum,
                        "quorum" => Consistency::Quorum,
                        "all" => Consistency::All,
                        _ => {
                            return Err(bad(
                                "consistency: one, local_one, local_quorum, quorum or all",
                            ));
                        }
                    }
                }
                "writers" => {
                    o.writers = match v {
                        "shared" => Writers::Shared,
                        "single" => Writers::Single,
                        _ => return Err(bad("writers: shared or single")),
                    }
                }
                "partitions" => {
                    o.feed_partitions = Some(
                        v.parse()
                            .ok()
                            .filter(|p| (1..=4096).contains(p))
                            .ok_or(bad("partitions: a number from 1 to 4096"))?,
                    )
                }
                "digests" => {
                    o.keyspace_digests = match v {
                        "keyspace" => true,
                        "node" => false,
                        _ => return Err(bad("digests: keyspace or node")),
                    }
                }
                _ => {
                    return Err(bad(
                        "unknown scylla:// parameter (replication, consistency, writers, partitions, digests)",
                    ));
                }
            }
        }
        Ok(o)
    }
}

fn valid_name(s: &str) -> bool {
    (1..=48).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_replication(v: &str) -> Result<Replication> {
    let bad = StoreError::InvalidArgument(
        "replication: SimpleStrategy:RF or NetworkTopologyStrategy:DC=RF[,DC=RF…]",
    );
    let (class, args) = v.split_once(':').unwrap_or((v, ""));
    match class {
        "SimpleStrategy" => {
            let rf = if args.is_empty() {
                1
            } else {
                args.parse().map_err(|_| bad)?
            };
            if rf == 0 {
                return Err(StoreError::InvalidArgument(
                    "replication factor must be at least 1",
                ));
            }
            Ok(Replication::Simple(rf))
        }
        "NetworkTopologyStrategy" => {
            let mut dcs = Vec::new();
            for dc in args.split(',').filter(|d| !d.is_empty()) {
                let (name, rf) = dc.split_once('=').ok_or(StoreError::InvalidArgument(
                    "replication: NetworkTopologyStrategy:DC=RF[,DC=RF…]",
                ))?;
                let rf: u32 = rf.parse().map_err(|_| {
                    StoreError::InvalidArgument("replication: a factor is a number")
                })?;
                if !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    || name.is_empty()
                {
                    return Err(StoreError::InvalidArgument(
                        "replication: a data centre name is [A-Za-z0-9_-]",
                    ));
                }
                dcs.push((name.to_string(), rf));
            }
            if dcs.is_empty() {
                return Err(bad);
            }
            Ok(Replication::NetworkTopology(dcs))
        }
        _ => Err(bad),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_defaults_and_options() {
        let o = ScyllaOptions::from_url("scylla://10.0.0.1:9042,10.0.0.2/starling").unwrap();
        assert_eq!(o.nodes, vec!["10.0.0.1:9042", "10.0.0.2:9042"]);
        assert_eq!(o.keyspace, "starling");
        assert_eq!(o.replication, Replication::Simple(1));
        assert_eq!(o.consistency, Consistency::LocalQuorum);
        assert_eq!(o.writers, Writers::Shared);
        let o = ScyllaOptions::from_url(
            "scylla://h:1/ks?replication=NetworkTopologyStrategy:dc1=3,dc2=2&consistency=one&writers=single",
        )
        .unwrap();
        assert_eq!(
            o.replication,
            Replication::NetworkTopology(vec![("dc1".into(), 3), ("dc2".into(), 2)])
        );
        assert_eq!(
            o.replication.cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        assert_eq!(o.consistency, Consistency::One);
        assert_eq!(o.writers, Writers::Single);
        assert_eq!(o.feed_partitions, None);
        let o = ScyllaOptions::from_url("scylla://h/ks?partitions=64").unwrap();
        assert_eq!(o.feed_partitions, Some(64));
        assert!(!o.keyspace_digests);
        let o = ScyllaOptions::from_url("scylla://h/ks?digests=keyspace").unwrap();
        assert!(o.keyspace_digests);
    }

    #[test]
    fn bad_urls_are_refused() {
        for url in [
            "cassandra://h/ks",
            "scylla://h",
            "scylla:///ks",
            "scylla://h/1ks",
            "scylla://h/ks-x",
            "scylla://h/ks?consistency=most",
            "scylla://h/ks?replication=SimpleStrategy:0",
            "scylla://h/ks?replication=NetworkTopologyStrategy:",
            "scylla://h/ks?replication=NetworkTopologyStrategy:d'c=1",
            "scylla://h/ks?color=blue",
            "scylla://h/ks?partitions=0",
            "scylla://h/ks?partitions=many",
            "scylla://h/ks?digests=region",
        ] {
            assert!(ScyllaOptions::from_url(url).is_err(), "{url}");
        }
    }
}
