//! The simulated wide-area network between regions.
//!
//! Every message between two nodes passes [`Wan::route`]: inside a region it is delivered at
//! once; between regions it gets the link's one-way latency plus uniform jitter, may be dropped
//! (loss probability), and is always dropped while the link is partitioned. The same table drives
//! the deterministic simulation and the real TCP transport, and can be changed at run time
//! (`PUT /v1/admin/wan`).

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// One direction of a link between two regions, as the admin API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WanLink {
    /// Sending region.
    pub from: String,
    /// Receiving region.
    pub to: String,
    /// One-way latency in milliseconds.
    pub latency_ms: u64,
    /// Uniform jitter added to the latency, in milliseconds (0 ..= jitter).
    pub jitter_ms: u64,
    /// Probability in [0, 1] that a message is lost.
    pub loss: f64,
    /// Whether the link is cut.
    pub partitioned: bool,
}

/// What happens to one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Delivered after this delay.
    Deliver(Duration),
    /// Lost (loss or partition).
    Drop,
}

/// The table of links between regions. Links not in the table are perfect (no delay, no loss):
/// that is the case inside a region.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Wan {
    links: BTreeMap<(String, String), WanLink>,
}

/// Errors of a WAN table change.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WanError {
    /// A loss outside [0, 1], a negative or absurd latency.
    #[error("link {from}->{to}: {what}")]
    Invalid {
        /// Sending region.
        from: String,
        /// Receiving region.
        to: String,
        /// What is wrong.
        what: &'static str,
    },
}

impl Wan {
    /// A WAN with no links (every message delivered at once).
    pub fn new() -> Self {
        Self::default()
    }

    /// Round trips between each pair of `regions` given as `a-b=RTT` (milliseconds), both
    /// directions at RTT/2 one way with 10 % jitter. Pairs not named get `default_rtt_ms`.
    pub fn with_rtts(regions: &[&str], rtts: &[(&str, &str, u64)], default_rtt_ms: u64) -> Self {
        let mut wan = Wan::new();
        for (i, a) in regions.iter().enumerate() {
            for b in &regions[i + 1..] {
                let rtt = rtts
                    .iter()
                    .find(|(x, y, _)| (x == a && y == b) || (x == b && y == a))
                    .map_or(default_rtt_ms, |(_, _, r)| *r);
                for (from, to) in [(a, b), (b, a)] {
                    wan.links.insert(
                        (from.to_string(), to.to_string()),
                        WanLink {
                            from: from.to_string(),
                            to: to.to_string(),
                            latency_ms: rtt / 2,
                            jitter_ms: rtt / 20,
                            loss: 0.0,
                            partitioned: false,
                        },
                    );
                }
            }
        }
        wan
    }

    /// The default of the design: three regions with round trips from 100 to 250 ms.
    pub fn default_three(regions: [&str; 3]) -> Self {
        let [a, b, c] = regions;
        Wan::with_rtts(&regions, &[(a, b, 100), (a, c, 250), (b, c, 180)], 150)
    }

    /// Sets (or adds) links, refusing the whole change if one link is invalid.
    pub fn set(&mut self, links: Vec<WanLink>) -> Result<(), WanError> {
        for l in &links {
            let bad = |what| WanError::Invalid {
                from: l.from.clone(),
                to: l.to.clone(),
                what,
            };
            if !(0.0..=1.0).contains(&l.loss) || l.loss.is_nan() {
                return Err(bad("loss must be between 0 and 1"));
            }
            if l.latency_ms > 60_000 || l.jitter_ms > 60_000 {
                return Err(bad("latency and jitter must be at most 60000 ms"));
            }
            if l.from == l.to {
                return Err(bad("a link joins two different regions"));
            }
        }
        for l in links {
            self.links.insert((l.from.clone(), l.to.clone()), l);
        }
        Ok(())
    }

    /// Cuts (or heals) both directions between two regions.
    pub fn partition(&mut self, a: &str, b: &str, cut: bool) {
        for (from, to) in [(a, b), (b, a)] {
            self.links
                .entry((from.to_string(), to.to_string()))
                .or_insert_with(|| WanLink {
                    from: from.to_string(),
                    to: to.to_string(),
                    latency_ms: 0,
                    jitter_ms: 0,
                    loss: 0.0,
                    partitioned: false,
                })
                .partitioned = cut;
        }
    }

    /// Sets the loss probability of every link.
    pub fn set_loss_everywhere(&mut self, loss: f64) {
        for l in self.links.values_mut() {
            l.loss = loss.clamp(0.0, 1.0);
        }
    }

    /// The current table.
    pub fn links(&self) -> Vec<WanLink> {
        self.links.values().cloned().collect()
    }

    /// What happens to one message from region `from` to region `to`.
    pub fn route(&self, from: &str, to: &str, rng: &mut impl Rng) -> Route {
        if from == to {
            return Route::Deliver(Duration::ZERO);
        }
        let Some(l) = self.links.get(&(from.to_string(), to.to_string())) else {
            return Route::Deliver(Duration::ZERO);
        };
        if l.partitioned || (l.loss > 0.0 && rng.random_bool(l.loss)) {
            return Route::Drop;
        }
        let jitter = if l.jitter_ms > 0 {
            rng.random_range(0..=l.jitter_ms)
        } else {
            0
        };
        Route::Deliver(Duration::from_millis(l.latency_ms + jitter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn routes_follow_the_table() {
        let mut wan = Wan::default_three(["us", "eu", "ap"]);
        let mut rng = SmallRng::seed_from_u64(1);
        assert_eq!(
            wan.route("us", "us", &mut rng),
            Route::Deliver(Duration::ZERO)
        );
        let Route::Deliver(d) = wan.route("us", "ap", &mut rng) else {
            panic!("dropped")
        };
        assert!((125..=137).contains(&(d.as_millis() as u64)), "{d:?}");
        wan.partition("us", "ap", true);
        assert_eq!(wan.route("ap", "us", &mut rng), Route::Drop);
        wan.partition("us", "ap", false);
        assert_ne!(wan.route("ap", "us", &mut rng), Route::Drop);
    }

    #[test]
    fn invalid_links_are_refused_whole() {
        let mut wan = Wan::default_three(["us", "eu", "ap"]);
        let before = wan.clone();
        let mut l = wan.links()[0].clone();
        l.loss = 2.0;
        assert!(wan.set(vec![wan.links()[1].clone(), l]).is_err());
        assert_eq!(wan, before);
    }
}
