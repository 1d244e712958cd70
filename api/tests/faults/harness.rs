//! The fault tests' cluster: real `starling serve` processes on loopback that a test can
//! `kill -9` and restart on the same data directory and ports, a `redis-server` it can kill and
//! restart, the replicas' digests, and a watchdog that bounds the whole test in time and kills
//! every child if it fires (a test that fails or panics kills them on drop).

use crate::common::{Node, free_port, http, http_json};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub(crate) const ADMIN: &str = "fault-admin-token";
const SECRET: &str = "fault-cluster-secret-0123456789";

/// Pids of every child the fault tests started and have not reaped yet: what the watchdog kills.
fn children() -> &'static Mutex<HashSet<u32>> {
    static PIDS: OnceLock<Mutex<HashSet<u32>>> = OnceLock::new();
    PIDS.get_or_init(|| Mutex::new(HashSet::new()))
}

fn sigkill(pid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// Bounds a test in time: past `limit`, kills every child and exits the test process with a
/// failure (a hung test must not keep CI or the machine busy). Dropping it disarms it.
pub(crate) struct Watchdog {
    done: Arc<AtomicBool>,
}

impl Watchdog {
    pub(crate) fn arm(name: &'static str, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            while Instant::now() < deadline {
                if d.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!("{name}: over its global timeout of {limit:?}; killing every child");
            for pid in children().lock().drain() {
                sigkill(pid);
            }
            std::process::exit(101);
        });
        Watchdog { done }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Relaxed);
    }
}

/// A node of the cluster: how to (re)start it, and its process while it runs.
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) region: String,
    pub(crate) port: u16,
    args: Vec<String>,
    node: Option<Node>,
}

impl Member {
    pub(crate) fn is_up(&self) -> bool {
        self.node.is_some()
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.node.as_ref().map(|n| n.child.id())
    }

    pub(crate) fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

/// Options of a cluster.
pub(crate) struct Options<'a> {
    pub(crate) regions: &'a [&'a str],
    pub(crate) per_region: usize,
    /// Round trips between every pair of regions, ms.
    pub(crate) rtt_ms: u64,
    /// `--handle-region` (the pair region of 1:1 conversations too).
    pub(crate) handle_region: &'a str,
    /// One Redis URL per region, if any.
    pub(crate) redis: Vec<String>,
    /// More flags for every node.
    pub(crate) extra: Vec<String>,
}

/// A cluster of restartable nodes; every process is killed on drop.
pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) members: Vec<Member>,
}

impl Cluster {
    pub(crate) fn start(o: &Options) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut rtt = Vec::new();
        for (i, a) in o.regions.iter().enumerate() {
            for b in &o.regions[i + 1..] {
                rtt.push(format!("{a}-{b}={}", o.rtt_ms));
            }
        }
        let rtt = rtt.join(",");
        let mut members = Vec::new();
        let mut seed: Option<String> = None;
        for (ri, region) in o.regions.iter().enumerate() {
            for k in 0..o.per_region {
                let name = format!("{region}{k}");
                let gossip = format!("127.0.0.1:{}", free_port());
                let data: PathBuf = dir.path().join(&name);
                let mut args = crate::common::member_args(
                    region,
                    &name,
                    &gossip,
                    SECRET,
                    seed.as_deref(),
                    Some(&data),
                );
                args.extend(
                    [
                        "--admin-token",
                        ADMIN,
                        "--handle-region",
                        o.handle_region,
                        // The load signs up users from one address.
                        "--auth-per-minute",
                        "1000000",
                    ]
                    .map(String::from),
                );
                if !rtt.is_empty() {
                    args.extend(["--wan-rtt".to_string(), rtt.clone()]);
                }
                if let Some(url) = o.redis.get(ri) {
                    args.extend(["--redis".to_string(), url.clone()]);
                }
                args.extend(o.extra.iter().cloned());
                seed.get_or_insert(gossip);
                members.push(Member {
                    name,
                    region: region.to_string(),
                    port: free_port(),
                    args,
                    node: None,
                });
            }
        }
        let mut c = Cluster { dir, members };
        for i in 0..c.members.len() {
            c.restart(i);
        }
        let n = c.members.len();
        assert!(
            crate::common::eventually(Duration::from_secs(60), || (0..n)
                .all(|i| c.members_alive(i) == n - 1)),
            "every node sees the others"
        );
        c
    }

    /// (Re)starts member `i` on its data directory and ports; waits for its ready line.
    pub(crate) fn restart(&mut self, i: usize) {
        let m = &mut self.members[i];
        assert!(m.node.is_none(), "{} is running", m.name);
        let node = Node::start(self.dir.path(), m.port, &m.args);
        children().lock().insert(node.child.id());
        m.node = Some(node);
    }

    /// `kill -9` of member `i` (waits until it is reaped).
    pub(crate) fn kill(&mut self, i: usize) {
        if let Some(mut node) = self.members[i].node.take() {
            let pid = node.child.id();
            node.child.kill().unwrap();
            node.child.wait().unwrap();
            children().lock().remove(&pid);
        }
    }

    /// Base URLs of the members `pick` selects.
    pub(crate) fn urls(&self, pick: impl Fn(&Member) -> bool) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| pick(m))
            .map(Member::url)
            .collect()
    }

    /// Members member `i` sees alive (itself excluded).
    pub(crate) fn members_alive(&self, i: usize) -> usize {
        let (s, b) = http(self.members[i].port, "GET", "/v1/cluster", Some(ADMIN), b"");
        assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        v["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["state"] == "alive")
            .count()
    }

    /// The digest root of every running member.
    pub(crate) fn digests(&self) -> Vec<(String, String)> {
        self.members
            .iter()
            .filter(|m| m.is_up())
            .map(|m| {
                let (s, b) = http(m.port, "GET", "/v1/admin/digest", Some(ADMIN), b"");
                assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
                (m.name.clone(), v["root"].as_str().unwrap().to_string())
            })
            .collect()
    }

    /// Waits (≤ `max`) until every member's digest root is the same; returns how long it took,
    /// or panics with the roots.
    pub(crate) fn converge(&self, max: Duration) -> Duration {
        let start = Instant::now();
        loop {
            let d = self.digests();
            if d.iter().all(|(_, r)| *r == d[0].1) {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < max,
                "replicas still differ after {max:?}: {d:?}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Sets the WAN links between every pair of `regions` on every running member (each node
    /// applies the table to what it sends).
    pub(crate) fn set_links(&self, pairs: &[(&str, &str)], rtt_ms: u64, cut: bool) {
        let mut links = Vec::new();
        for (a, b) in pairs {
            for (x, y) in [(a, b), (b, a)] {
                links.push(serde_json::json!({
                    "from": x, "to": y, "latency_ms": rtt_ms / 2, "jitter_ms": 0,
                    "loss": 0.0, "partitioned": cut,
                }));
            }
        }
        let body = serde_json::json!({ "links": links }).to_string();
        for m in self.members.iter().filter(|m| m.is_up()) {
            let (s, b) = http_json(m.port, "PUT", "/v1/admin/wan", Some(ADMIN), &body);
            assert_eq!(s, 200, "{}", String::from_utf8_lossy(&b));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A `redis-server` on a fixed loopback port, killable and restartable; killed on drop.
pub(crate) struct Redis {
    pub(crate) port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Redis {
    pub(crate) fn start(dir: &Path) -> Redis {
        let mut r = Redis {
            port: free_port(),
            dir: dir.to_path_buf(),
            child: None,
        };
        r.restart();
        r
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none());
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .current_dir(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("redis-server (Debian package redis-server; infra/test.sh installs it)");
        children().lock().insert(child.id());
        self.child = Some(child);
        assert!(
            crate::common::eventually(Duration::from_secs(10), || std::net::TcpStream::connect((
                "127.0.0.1",
                self.port
            ))
            .is_ok()),
            "redis-server answers"
        );
    }

    pub(crate) fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let pid = c.id();
            let _ = c.kill();
            let _ = c.wait();
            children().lock().remove(&pid);
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Resident set size of a process, KiB (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The value of a metric line `name` (with its labels, e.g. `x{a="b"}`) in `/metrics`.
pub(crate) fn metric(port: u16, name: &str) -> Option<f64> {
    crate::common::Metrics::read(format!("127.0.0.1:{port}"))?.get(name)
}
