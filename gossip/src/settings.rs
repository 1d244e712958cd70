//! The gossip settings of `starling serve` (feature `clap`): a clap group (flags,
//! `STARLING_<FLAG>` variables and `--config` keys, each declared once here, typed and
//! defaulted) that the server flattens into its command line, and what a node joins its
//! cluster with, [`Cluster`], checked from it once ([`GossipSettings::cluster`]).

use serde::{Deserialize, Serialize};
use starling_store::checked_text;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

checked_text!(
    /// `HOST:PORT`, the host an IP address or a DNS name.
    HostPort,
    |s| {
        if crate::seeds::is_well_formed(s) {
            Ok(())
        } else {
            Err("expected HOST:PORT (an IP address or a DNS name)".into())
        }
    }
);

checked_text!(
    /// A shared secret of at least 16 characters (its `Debug` does not show it).
    Secret,
    |s| {
        if s.len() >= 16 {
            Ok(())
        } else {
            Err("use at least 16 characters".into())
        }
    }
);

impl fmt::Debug for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

// The choices' variants have `//` comments, not docs: a documented variant would turn clap's
// `--help` into its long form for every flag. Their values show as `[possible values: …]`.

/// Whether gossip frames in clear are still taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GossipEncryption {
    // Frames in clear are refused.
    Required,
    // Frames in clear are still taken (the first roll of an upgrade).
    Optional,
}

impl From<GossipEncryption> for crate::wire::Encryption {
    fn from(e: GossipEncryption) -> Self {
        match e {
            GossipEncryption::Required => crate::wire::Encryption::Required,
            GossipEncryption::Optional => crate::wire::Encryption::Optional,
        }
    }
}

/// Where the gossip core loop's store calls run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreLane {
    // A thread of its own.
    Dedicated,
    // Tokio's blocking pool.
    Shared,
}

/// Where the gossip core's store work runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreWork {
    // A store worker; the core loop takes its answers as events.
    Worker,
    // Awaited in the core loop's step that asked for it.
    Inline,
}

/// Where SWIM's timers and packets run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Membership {
    // A membership loop of its own.
    Separate,
    // On the core loop between its store calls.
    Inline,
}

/// How a node gossips with its cluster: a group of `starling serve`'s settings. Clustering is on
/// with `--gossip-listen`; [`cluster`](Self::cluster) checks the group and derives the address
/// peers reach this node at.
#[derive(clap::Args, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct GossipSettings {
    /// Address the gossip transport listens on, e.g. `0.0.0.0:7946`; enables clustering.
    #[arg(long, env = "STARLING_GOSSIP_LISTEN")]
    pub gossip_listen: Option<SocketAddr>,
    /// `HOST:PORT` peers reach this node's gossip at (default: the listen address when it is
    /// not `0.0.0.0`/`::`, else `$POD_IP` with the listen port, else this host name's address).
    #[arg(long, env = "STARLING_GOSSIP_ADVERTISE")]
    pub gossip_advertise: Option<HostPort>,
    /// Gossip addresses of nodes to join through, comma-separated `HOST:PORT`; a host may be a
    /// DNS name (e.g. a headless Service), resolved again on each join attempt, every A/AAAA
    /// record used.
    #[arg(long, env = "STARLING_SEEDS", value_delimiter = ',')]
    pub seeds: Option<Vec<HostPort>>,
    /// Secret shared by the nodes of a cluster; frames without it are refused. Required with
    /// `--gossip-listen`.
    #[arg(long, env = "STARLING_CLUSTER_SECRET")]
    pub cluster_secret: Option<Secret>,
    /// Gossip frames are encrypted with the cluster secret: `required` (the default) refuses
    /// peers that send frames in clear; `optional` still talks in clear to builds before
    /// encryption, for the first roll of an upgrade from them (then roll again with `required`).
    #[arg(
        long,
        env = "STARLING_GOSSIP_ENCRYPTION",
        default_value = "required",
        hide_default_value = true
    )]
    pub gossip_encryption: GossipEncryption,
    /// Where the gossip core loop's store calls run: `dedicated` (the default: a thread of its
    /// own, so its ticks never wait behind the API's store calls) or `shared` (tokio's blocking
    /// pool, the path before; kept to compare the two under the same load).
    #[arg(
        long,
        env = "STARLING_GOSSIP_STORE_LANE",
        default_value = "dedicated",
        hide_default_value = true
    )]
    pub gossip_store_lane: StoreLane,
    /// Where SWIM's timers and packets run: `separate` (the default: a membership loop that
    /// never awaits the store, so probes keep their times while a store call is slow) or
    /// `inline` (on the core loop between its store calls, the path before; kept to compare).
    #[arg(
        long,
        env = "STARLING_GOSSIP_MEMBERSHIP",
        default_value = "separate",
        hide_default_value = true
    )]
    pub gossip_membership: Membership,
    /// Where the gossip core's store work runs: `worker` (the default: a store worker whose
    /// answers the core loop takes as events, so no tick or message waits on a store call) or
    /// `inline` (awaited in the core loop's step, the path before; kept to compare).
    #[arg(
        long,
        env = "STARLING_GOSSIP_STORE_WORK",
        default_value = "worker",
        hide_default_value = true
    )]
    pub gossip_store_work: StoreWork,
}

impl Default for GossipSettings {
    fn default() -> Self {
        starling_store::settings::defaults()
    }
}

/// What a node joins its cluster with: [`GossipSettings`] checked, the advertised address
/// derived. The transport's part of [`TransportConfig`](crate::TransportConfig) (the rest, this
/// node's identity, the WAN, the protocol's timers and the clock, is the server's).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// Where the gossip transport listens (may be `0.0.0.0:PORT`).
    pub listen: SocketAddr,
    /// `HOST:PORT` peers reach this node at.
    pub advertise: String,
    /// Nodes to join through.
    pub seeds: Vec<String>,
    /// The cluster secret.
    pub secret: String,
    /// Whether frames in clear are still taken (`--gossip-encryption`).
    pub encryption: crate::wire::Encryption,
    /// Whether the core loop's store calls have a thread of their own (`--gossip-store-lane`).
    pub dedicated_store_lane: bool,
    /// Whether SWIM runs on a membership loop of its own (`--gossip-membership`).
    pub separate_membership: bool,
    /// Whether the core loop awaits its store work itself (`--gossip-store-work inline`).
    pub store_work_inline: bool,
}

impl Cluster {
    /// The transport's config: these settings with what the server adds, this node as peers
    /// see it (`me`, its address [`advertise`](Self::advertise)), the WAN, the protocol's
    /// settings and the store's clock.
    pub fn transport(
        &self,
        me: crate::Peer,
        wan: crate::Wan,
        gossip: crate::GossipConfig,
        clock: std::sync::Arc<starling_store::HlcClock>,
    ) -> crate::TransportConfig {
        crate::TransportConfig {
            me,
            listen: self.listen,
            seeds: self.seeds.clone(),
            secret: self.secret.as_bytes().to_vec(),
            encryption: self.encryption,
            wan,
            gossip,
            clock,
            dedicated_store_lane: self.dedicated_store_lane,
            separate_membership: self.separate_membership,
            store_work_inline: self.store_work_inline,
        }
    }
}

/// Why the gossip settings cannot work; each message names the setting.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    /// Seeds without a gossip listener.
    #[error("--seeds needs --gossip-listen: a node joins a cluster by gossip")]
    SeedsWithoutListen,
    /// A gossip listener without the cluster secret.
    #[error("--gossip-listen needs --cluster-secret: nodes of a cluster authenticate each other")]
    NoSecret,
    /// `--gossip-advertise` is an unspecified address (`0.0.0.0`, `::`).
    #[error("--gossip-advertise {0}: give the address peers reach this node at")]
    UnspecifiedAdvertise(String),
    /// `$POD_IP` is set but no IP address.
    #[error("$POD_IP {0:?}: not an IP address")]
    BadPodIp(String),
    /// Listening everywhere with nothing to derive the advertised address from.
    #[error(
        "--gossip-listen {0}: give --gossip-advertise HOST:PORT, the address peers reach this node at"
    )]
    NoAdvertise(SocketAddr),
}

impl GossipSettings {
    /// The cluster this node joins (`None`: clustering is off, no `--gossip-listen`), the
    /// group's settings checked together: seeds need a listener, a listener needs the secret,
    /// and the advertised address is [`advertise_address`]'s (`$POD_IP`, then this host's
    /// name, when neither `--gossip-advertise` nor the listen address will do).
    pub fn cluster(&self) -> Result<Option<Cluster>, SettingsError> {
        let seeds: Vec<String> = self
            .seeds
            .iter()
            .flatten()
            .map(|s| s.as_str().to_string())
            .collect();
        let Some(listen) = self.gossip_listen else {
            if !seeds.is_empty() {
                return Err(SettingsError::SeedsWithoutListen);
            }
            return Ok(None);
        };
        let Some(secret) = &self.cluster_secret else {
            return Err(SettingsError::NoSecret);
        };
        let advertise = advertise_address(
            self.gossip_advertise.as_ref().map(HostPort::as_str),
            listen,
            std::env::var("POD_IP").ok(),
            host_address,
        )?;
        Ok(Some(Cluster {
            listen,
            advertise,
            seeds,
            secret: secret.as_str().to_string(),
            encryption: self.gossip_encryption.into(),
            dedicated_store_lane: self.gossip_store_lane == StoreLane::Dedicated,
            separate_membership: self.gossip_membership == Membership::Separate,
            store_work_inline: self.gossip_store_work == StoreWork::Inline,
        }))
    }
}

/// The gossip address peers reach this node at: `--gossip-advertise` if given; else the listen
/// address unless it is unspecified (`0.0.0.0`, `::`); else `$POD_IP` (Kubernetes' downward
/// API) with the listen port; else what this host's name resolves to (`host_ip(port)`, a
/// container's address on compose networks).
pub fn advertise_address(
    flag: Option<&str>,
    listen: SocketAddr,
    pod_ip: Option<String>,
    host_ip: impl Fn(u16) -> Option<SocketAddr>,
) -> Result<String, SettingsError> {
    if let Some(a) = flag {
        let a = a.trim().to_string();
        if a.parse::<SocketAddr>()
            .is_ok_and(|s| s.ip().is_unspecified())
        {
            return Err(SettingsError::UnspecifiedAdvertise(a));
        }
        return Ok(a);
    }
    if !listen.ip().is_unspecified() {
        return Ok(listen.to_string());
    }
    if let Some(ip) = pod_ip.filter(|p| !p.trim().is_empty()) {
        let ip: IpAddr = ip.trim().parse().map_err(|_| SettingsError::BadPodIp(ip))?;
        return Ok(SocketAddr::new(ip, listen.port()).to_string());
    }
    host_ip(listen.port())
        .map(|a| a.to_string())
        .ok_or(SettingsError::NoAdvertise(listen))
}

/// The first address other than loopback this host's name resolves to, with `port`.
fn host_address(port: u16) -> Option<SocketAddr> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    std::net::ToSocketAddrs::to_socket_addrs(&(name.trim(), port))
        .ok()?
        .find(|a| !a.ip().is_loopback() && !a.ip().is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_transports_and_clustering_is_off() {
        let s = GossipSettings::default();
        assert_eq!(s.gossip_encryption, GossipEncryption::Required);
        assert_eq!(s.cluster(), Ok(None));
        let c = GossipSettings {
            gossip_listen: Some("127.0.0.1:7000".parse().unwrap()),
            cluster_secret: Some("a-secret-of-16-chars".parse().unwrap()),
            ..GossipSettings::default()
        }
        .cluster()
        .unwrap()
        .unwrap();
        assert_eq!(c.advertise, "127.0.0.1:7000", "the listen address");
        assert_eq!(c.encryption, crate::wire::Encryption::Required);
        assert!(c.dedicated_store_lane && c.separate_membership && !c.store_work_inline);
        let me = crate::Peer {
            node: starling_store::NodeId(1),
            region: "us".into(),
            addr: c.advertise.clone(),
            incarnation: 1,
        };
        let clock = std::sync::Arc::new(starling_store::HlcClock::new());
        let t = c.transport(
            me,
            crate::Wan::default(),
            crate::GossipConfig::wan(16),
            clock,
        );
        assert_eq!(
            (t.listen, t.secret.as_slice()),
            (c.listen, c.secret.as_bytes())
        );
        assert_eq!((t.encryption, t.seeds), (c.encryption, c.seeds));
        assert!(t.dedicated_store_lane && t.separate_membership && !t.store_work_inline);
    }

    #[test]
    fn the_settings_are_checked_together() {
        let seeds = GossipSettings {
            seeds: Some(vec!["a:1".parse().unwrap()]),
            ..GossipSettings::default()
        };
        assert_eq!(seeds.cluster(), Err(SettingsError::SeedsWithoutListen));
        let listen = GossipSettings {
            gossip_listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..seeds
        };
        assert_eq!(listen.cluster(), Err(SettingsError::NoSecret));
        assert!(
            SettingsError::NoSecret
                .to_string()
                .contains("--cluster-secret")
        );
        assert!("short".parse::<Secret>().is_err());
        assert!(!format!("{:?}", "a-secret-of-16-chars".parse::<Secret>().unwrap()).contains('a'));
        assert!("no port".parse::<HostPort>().is_err());
    }

    #[test]
    fn the_advertise_address_defaults_to_what_peers_can_reach() {
        let any: SocketAddr = "0.0.0.0:7946".parse().unwrap();
        let none = |_| None;
        let given = advertise_address(Some("starling-us-0.gossip:7946"), any, None, none);
        assert_eq!(given.unwrap(), "starling-us-0.gossip:7946");
        let lo: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        assert_eq!(
            advertise_address(None, lo, None, none).unwrap(),
            "127.0.0.1:7001"
        );
        let pod = advertise_address(None, any, Some("10.1.2.3".into()), none);
        assert_eq!(pod.unwrap(), "10.1.2.3:7946");
        let pod6 = advertise_address(None, any, Some("fd00::7".into()), none);
        assert_eq!(pod6.unwrap(), "[fd00::7]:7946");
        let host = advertise_address(None, any, None, |p| {
            Some(SocketAddr::from(([10, 89, 0, 4], p)))
        });
        assert_eq!(host.unwrap(), "10.89.0.4:7946");
        for (flag, pod, needle) in [
            (None, None, "--gossip-advertise"),
            (Some("0.0.0.0:7946"), None, "--gossip-advertise"),
            (None, Some("not-an-ip"), "POD_IP"),
        ] {
            let err = advertise_address(flag, any, pod.map(Into::into), none)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
