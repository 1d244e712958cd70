//! Seeds by name: a seed is `HOST:PORT` where the host is an IP address or a DNS name.
//!
//! On a container platform a node's peers have no fixed addresses: a Kubernetes headless Service
//! answers a name with one A/AAAA record per ready pod, and those change as pods restart. So a
//! name is resolved again on every join attempt (never cached), and every address it resolves
//! to is announced to, not only the first one a `connect` would try.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

/// Every address the seeds stand for, resolved now by the system resolver: an IP seed as it is,
/// a name as each of its A/AAAA records (in the resolver's order, duplicates dropped). A name
/// that does not resolve is logged and skipped; the next attempt tries it again.
pub async fn resolve(seeds: &[String]) -> Vec<String> {
    resolve_with(seeds, |s| async move {
        tokio::net::lookup_host(s).await.map(Iterator::collect)
    })
    .await
}

/// [`resolve`] with the name lookup given: `lookup("host:port")` returns its addresses.
pub async fn resolve_with<F, Fut>(seeds: &[String], lookup: F) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = io::Result<Vec<SocketAddr>>>,
{
    let mut out: Vec<String> = Vec::new();
    for seed in seeds {
        let seed = seed.trim();
        if seed.is_empty() {
            continue;
        }
        let addrs = match seed.parse::<SocketAddr>() {
            Ok(a) => vec![a],
            Err(_) => match lookup(seed.to_string()).await {
                Ok(addrs) => addrs,
                Err(e) => {
                    tracing::warn!(%seed, error = %e, "a seed does not resolve; trying again later");
                    Vec::new()
                }
            },
        };
        for a in addrs {
            let a = a.to_string();
            if !out.contains(&a) {
                out.push(a);
            }
        }
    }
    out
}

/// Whether `seed` is a well-formed `HOST:PORT` (an IP or a DNS name, and a port), checked at
/// start so a typo is one clear error rather than a node that never joins.
pub fn is_well_formed(seed: &str) -> bool {
    if seed.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = seed.rsplit_once(':') else {
        return false;
    };
    let port_ok = port.parse::<u16>().is_ok_and(|p| p > 0);
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    port_ok && host_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn block<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn every_record_of_a_name_is_used_and_resolved_again_each_time() {
        let calls = AtomicUsize::new(0);
        let lookup = |name: String| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                assert_eq!(name, "starling-gossip.default.svc:7946");
                // The second lookup sees a pod replaced: its new address, not the old one.
                let last = if n == 0 { "10.0.0.3" } else { "10.0.0.9" };
                Ok(vec![
                    "10.0.0.1:7946".parse().unwrap(),
                    "[fd00::2]:7946".parse().unwrap(),
                    format!("{last}:7946").parse().unwrap(),
                ])
            }
        };
        let seeds = vec![
            "starling-gossip.default.svc:7946".to_string(),
            "10.0.0.1:7946".to_string(),
        ];
        let first = block(resolve_with(&seeds, lookup));
        assert_eq!(first, ["10.0.0.1:7946", "[fd00::2]:7946", "10.0.0.3:7946"]);
        let second = block(resolve_with(&seeds, lookup));
        assert_eq!(second, ["10.0.0.1:7946", "[fd00::2]:7946", "10.0.0.9:7946"]);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "the name is looked up on every call"
        );
    }

    #[test]
    fn a_name_that_does_not_resolve_is_skipped() {
        let seeds = vec!["nowhere:7946".to_string(), "127.0.0.1:7000".to_string()];
        let out = block(resolve_with(&seeds, |_| async {
            Err(io::Error::other("no such host"))
        }));
        assert_eq!(out, ["127.0.0.1:7000"]);
    }

    #[test]
    fn the_system_resolver_gives_every_address_of_localhost() {
        let expected: Vec<String> = std::net::ToSocketAddrs::to_socket_addrs("localhost:7946")
            .unwrap()
            .map(|a| a.to_string())
            .collect();
        let got = block(resolve(&["localhost:7946".to_string()]));
        for a in &expected {
            assert!(got.contains(a), "{a} missing from {got:?}");
        }
        assert!(!got.is_empty());
    }

    #[test]
    fn seeds_are_checked_for_form() {
        for ok in [
            "10.0.0.1:7946",
            "[::1]:7946",
            "localhost:7946",
            "starling-us-gossip.starling.svc.cluster.local:7946",
        ] {
            assert!(is_well_formed(ok), "{ok}");
        }
        for bad in [
            "",
            "host",
            "host:",
            "host:0",
            "host:99999",
            ":7946",
            "bad_host:7946",
            "-a.b:1",
            "a..b:1",
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
