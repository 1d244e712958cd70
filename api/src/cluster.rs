//! `starling cluster`: a local multi-region cluster of real `starling serve` processes on
//! loopback, with the simulated WAN between its regions.
//!
//! Node `k` of region `r` is named `{r}{k}`, serves HTTP on `base + i` and gossips on
//! `base + 1000 + i` (`i` counts nodes across regions); the first node is every other node's
//! seed; `--redis` adds one `redis-server` per region on `base + 2000 + region`;
//! `--store scylla://HOST:PORT[/PREFIX]` puts each region's nodes on one keyspace of that
//! cluster, `PREFIX_REGION` ([`region_store`]: a region of N nodes over one keyspace). Each process
//! logs to `DIR/logs/NAME.log` and keeps its store in `DIR/NAME`. The cluster's description
//! (pids, endpoints, admin token) is written to `DIR/cluster.json`; Ctrl-C stops everything, and
//! `starling cluster down` stops a cluster started with `--detach`.

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Flags of `starling cluster`.
#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ClusterArgs {
    /// `down`: stop a detached cluster.
    #[command(subcommand)]
    pub action: Option<ClusterAction>,
    /// Regions, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "us,eu,ap")]
    pub regions: Vec<String>,
    /// Nodes per region.
    #[arg(long, default_value_t = 2)]
    pub nodes_per_region: usize,
    /// First HTTP port; gossip ports start 1000 above, Redis ports 2000 above.
    #[arg(long, default_value_t = 8080)]
    pub base_port: u16,
    /// Round trips between regions, e.g. `us-eu=100ms,us-ap=250ms,eu-ap=180ms`; pairs not
    /// given get 150 ms.
    #[arg(long)]
    pub rtt: Option<String>,
    /// Where stores, logs and `cluster.json` go.
    #[arg(long, default_value = "./starling-cluster")]
    pub dir: PathBuf,
    /// Start one redis-server per region and point its nodes at it.
    #[arg(long)]
    pub redis: bool,
    /// Store engine of the nodes: `embedded`, `memory`, or `scylla://HOST:PORT[,…][/PREFIX]`:
    /// the nodes of each region share one keyspace of that cluster, `PREFIX_REGION` (default
    /// prefix `starling`), so a region is N nodes over one keyspace.
    #[arg(long, default_value = "embedded")]
    pub store: String,
    /// Admin token of every node (default: a random one, printed).
    #[arg(long)]
    pub admin_token: Option<String>,
    /// Start, print the endpoints and return, leaving the cluster running.
    #[arg(long)]
    pub detach: bool,
}

/// Sub-commands of `starling cluster`.
#[derive(Subcommand, Debug, Clone)]
pub enum ClusterAction {
    /// Stop a cluster started with `--detach`.
    Down {
        /// The cluster's directory.
        #[arg(long, default_value = "./starling-cluster")]
        dir: PathBuf,
    },
}

/// One node of a running cluster, as `cluster.json` records it.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct NodeInfo {
    /// Region.
    pub region: String,
    /// Node name.
    pub name: String,
    /// HTTP base URL.
    pub http: String,
    /// Gossip address.
    pub gossip: String,
    /// Process id.
    pub pid: u32,
    /// Log file.
    pub log: PathBuf,
}

/// What `cluster.json` holds.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ClusterInfo {
    /// The nodes.
    pub nodes: Vec<NodeInfo>,
    /// Redis servers: region → (URL, pid).
    pub redis: Vec<(String, String, u32)>,
    /// The admin token.
    pub admin_token: String,
}

fn rtt_table(regions: &[String], given: Option<&str>) -> anyhow::Result<String> {
    let defaults = [("us", "eu", 100u64), ("us", "ap", 250), ("eu", "ap", 180)];
    let mut pairs: Vec<(String, String, u64)> = Vec::new();
    if let Some(g) = given {
        for part in g.split(',').filter(|p| !p.trim().is_empty()) {
            let (names, ms) = part
                .split_once('=')
                .with_context(|| format!("--rtt {part:?}: expected a-b=MILLIS"))?;
            let (a, b) = names
                .split_once('-')
                .with_context(|| format!("--rtt {part:?}: expected a-b=MILLIS"))?;
            let ms: u64 = ms
                .trim()
                .trim_end_matches("ms")
                .parse()
                .with_context(|| format!("--rtt {part:?}: milliseconds"))?;
            pairs.push((a.trim().into(), b.trim().into(), ms));
        }
    }
    let mut out = Vec::new();
    for (i, a) in regions.iter().enumerate() {
        for b in &regions[i + 1..] {
            let found = pairs
                .iter()
                .find(|(x, y, _)| (x == a && y == b) || (x == b && y == a))
                .map(|p| p.2)
                .or_else(|| {
                    defaults
                        .iter()
                        .find(|(x, y, _)| (x == a && y == b) || (x == b && y == a))
                        .map(|p| p.2)
                })
                .unwrap_or(150);
            out.push(format!("{a}-{b}={found}"));
        }
    }
    Ok(out.join(","))
}

fn random_token() -> anyhow::Result<String> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("random token: {e}"))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"))
}

/// SIGTERM to every pid, SIGKILL to what is left after `grace`.
fn stop_all(pids: &[u32], grace: Duration) {
    for p in pids {
        let _ = kill(Pid::from_raw(*p as i32), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && pids.iter().any(|p| alive(*p)) {
        std::thread::sleep(Duration::from_millis(100));
    }
    for p in pids.iter().filter(|p| alive(**p)) {
        let _ = kill(Pid::from_raw(*p as i32), Signal::SIGKILL);
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(10)..].join("\n")
}

fn healthy(agent: &ureq::Agent, url: &str) -> bool {
    agent
        .get(format!("{url}/healthz"))
        .call()
        .is_ok_and(|r| r.status() == 200)
}

/// Runs `starling cluster`.
pub async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    if let Some(ClusterAction::Down { dir }) = &args.action {
        return down(dir);
    }
    tokio::task::spawn_blocking(move || up(args))
        .await
        .context("the cluster supervisor")?
}

fn info_path(dir: &Path) -> PathBuf {
    dir.join("cluster.json")
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let path = info_path(dir);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no cluster recorded in {}", path.display()))?;
    let info: ClusterInfo = serde_json::from_str(&text).context("reading cluster.json")?;
    let mut pids: Vec<u32> = info.nodes.iter().map(|n| n.pid).collect();
    stop_all(&pids, Duration::from_secs(15));
    pids = info.redis.iter().map(|r| r.2).collect();
    stop_all(&pids, Duration::from_secs(5));
    std::fs::remove_file(&path).ok();
    println!(
        "stopped {} nodes and {} redis servers",
        info.nodes.len(),
        info.redis.len()
    );
    Ok(())
}

fn up(args: ClusterArgs) -> anyhow::Result<()> {
    if args.regions.is_empty() || args.nodes_per_region == 0 {
        bail!("--regions and --nodes-per-region: at least one of each");
    }
    let total = args.regions.len() * args.nodes_per_region;
    if args.base_port as usize + 2000 + args.regions.len() > u16::MAX as usize || total > 1000 {
        bail!("--base-port {}: the ports do not fit", args.base_port);
    }
    std::fs::create_dir_all(args.dir.join("logs"))
        .with_context(|| format!("creating {}", args.dir.display()))?;
    if let Ok(text) = std::fs::read_to_string(info_path(&args.dir))
        && let Ok(info) = serde_json::from_str::<ClusterInfo>(&text)
        && info.nodes.iter().any(|n| alive(n.pid))
    {
        bail!(
            "a cluster is already running from {} (stop it with `starling cluster down --dir {}`)",
            args.dir.display(),
            args.dir.display()
        );
    }
    let exe = std::env::current_exe().context("locating the starling binary")?;
    let rtt = rtt_table(&args.regions, args.rtt.as_deref())?;
    let secret = random_token()?;
    let admin = match &args.admin_token {
        Some(t) => t.clone(),
        None => random_token()?,
    };
    let mut children: Vec<Child> = Vec::new();
    let mut info = ClusterInfo {
        nodes: Vec::new(),
        redis: Vec::new(),
        admin_token: admin.clone(),
    };
    let result = start_all(&args, &exe, &rtt, &secret, &admin, &mut children, &mut info);
    if let Err(e) = result {
        let pids: Vec<u32> = children.iter().map(Child::id).collect();
        stop_all(&pids, Duration::from_secs(5));
        for c in &mut children {
            let _ = c.wait();
        }
        return Err(e);
    }
    std::fs::write(
        info_path(&args.dir),
        serde_json::to_string_pretty(&info).context("cluster.json")?,
    )
    .context("writing cluster.json")?;
    print_endpoints(&args, &info, &rtt);
    if args.detach {
        println!(
            "\ndetached; stop it with: starling cluster down --dir {}",
            args.dir.display()
        );
        return Ok(());
    }
    println!("\nCtrl-C stops the cluster.");
    wait_for_signal()?;
    println!("stopping…");
    let node_pids: Vec<u32> = info.nodes.iter().map(|n| n.pid).collect();
    stop_all(&node_pids, Duration::from_secs(15));
    let redis_pids: Vec<u32> = info.redis.iter().map(|r| r.2).collect();
    stop_all(&redis_pids, Duration::from_secs(5));
    for c in &mut children {
        let _ = c.wait();
    }
    std::fs::remove_file(info_path(&args.dir)).ok();
    println!("stopped");
    Ok(())
}

fn wait_for_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })
    .context("waiting for Ctrl-C")
}

#[allow(clippy::too_many_arguments)]
fn start_all(
    args: &ClusterArgs,
    exe: &Path,
    rtt: &str,
    secret: &str,
    admin: &str,
    children: &mut Vec<Child>,
    info: &mut ClusterInfo,
) -> anyhow::Result<()> {
    let logs = args.dir.join("logs");
    let mut redis_urls = Vec::new();
    if args.redis {
        for (ri, region) in args.regions.iter().enumerate() {
            let port = args.base_port + 2000 + ri as u16;
            let log = File::create(logs.join(format!("redis-{region}.log")))?;
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .context("starting redis-server (install the Debian package redis-server)")?;
            let url = format!("redis://127.0.0.1:{port}");
            info.redis.push((region.clone(), url.clone(), child.id()));
            children.push(child);
            redis_urls.push(url);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for url in &redis_urls {
            let addr = url.trim_start_matches("redis://");
            while std::net::TcpStream::connect(addr).is_err() {
                if Instant::now() > deadline {
                    bail!("redis-server at {url} did not start");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    let first_gossip = format!("127.0.0.1:{}", args.base_port + 1000);
    let mut i = 0u16;
    for (ri, region) in args.regions.iter().enumerate() {
        for k in 0..args.nodes_per_region {
            let name = format!("{region}{k}");
            let http = args.base_port + i;
            let gossip = format!("127.0.0.1:{}", args.base_port + 1000 + i);
            let log_path = logs.join(format!("{name}.log"));
            let log = File::create(&log_path)
                .with_context(|| format!("creating {}", log_path.display()))?;
            let mut cmd = Command::new(exe);
            cmd.arg("serve")
                .args(["--region", region, "--node-id", &name])
                .args(["--listen", &format!("127.0.0.1:{http}")])
                .arg("--data-dir")
                .arg(args.dir.join(&name))
                .args(["--gossip-listen", &gossip])
                .args(["--cluster-secret", secret, "--admin-token", admin])
                .args(["--wan-rtt", rtt, "--handle-region", &args.regions[0]])
                .args(["--store", &region_store(&args.store, region)])
                .env(
                    "STARLING_LOG",
                    std::env::var("STARLING_LOG").unwrap_or("info".into()),
                )
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            if i > 0 {
                cmd.args(["--seeds", &first_gossip]);
            }
            if let Some(url) = redis_urls.get(ri) {
                cmd.args(["--redis", url]);
            }
            let child = cmd
                .spawn()
                .with_context(|| format!("starting node {name}"))?;
            info.nodes.push(NodeInfo {
                region: region.clone(),
                name,
                http: format!("http://127.0.0.1:{http}"),
                gossip,
                pid: child.id(),
                log: log_path,
            });
            children.push(child);
            i += 1;
        }
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(2)))
        .build()
        .into();
    let deadline = Instant::now() + Duration::from_secs(60);
    for n in &info.nodes {
        while !healthy(&agent, &n.http) {
            if !alive(n.pid) {
                bail!(
                    "node {} exited during start; the end of {}:\n{}",
                    n.name,
                    n.log.display(),
                    tail(&n.log)
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not answer within 60 s (see {})",
                    n.name,
                    n.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(())
}

/// The `--store` of the nodes of `region`: a ScyllaDB URL names the region's own keyspace,
/// `PREFIX_REGION` (its query string kept); other engines are passed as given.
pub fn region_store(store: &str, region: &str) -> String {
    let Some(rest) = store.strip_prefix("scylla://") else {
        return store.to_string();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, format!("?{q}")),
        None => (rest, String::new()),
    };
    let (hosts, prefix) = match rest.split_once('/') {
        Some((h, p)) if !p.is_empty() => (h, p),
        Some((h, _)) => (h, "starling"),
        None => (rest, "starling"),
    };
    format!("scylla://{hosts}/{prefix}_{region}{query}")
}

fn print_endpoints(args: &ClusterArgs, info: &ClusterInfo, rtt: &str) {
    println!(
        "starling cluster: {} regions × {} nodes, WAN round trips {rtt}",
        args.regions.len(),
        args.nodes_per_region
    );
    println!(
        "{:<8} {:<10} {:<24} {:<20} log",
        "region", "node", "http", "gossip"
    );
    for n in &info.nodes {
        println!(
            "{:<8} {:<10} {:<24} {:<20} {}",
            n.region,
            n.name,
            n.http,
            n.gossip,
            n.log.display()
        );
    }
    for (region, url, _) in &info.redis {
        println!("redis of {region}: {url}");
    }
    println!("admin token: {}", info.admin_token);
    if let Some(n) = info.nodes.first() {
        println!(
            "try: curl -s -H 'authorization: Bearer {}' {}/v1/cluster",
            info.admin_token, n.http
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rtt_table_covers_every_pair() {
        let r: Vec<String> = ["us", "eu", "ap", "sa"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let t = rtt_table(&r, Some("us-sa=120ms, eu-us=90")).unwrap();
        assert_eq!(
            t,
            "us-eu=90,us-ap=250,us-sa=120,eu-ap=180,eu-sa=150,ap-sa=150"
        );
        assert!(rtt_table(&r, Some("us=1")).is_err());
    }

    #[test]
    fn a_scylla_store_gives_each_region_its_keyspace() {
        assert_eq!(
            region_store("scylla://h:9042,g:9042", "us"),
            "scylla://h:9042,g:9042/starling_us"
        );
        assert_eq!(
            region_store("scylla://h:9042/demo?replication=1", "eu"),
            "scylla://h:9042/demo_eu?replication=1"
        );
        assert_eq!(
            region_store("scylla://h:9042/", "ap"),
            "scylla://h:9042/starling_ap"
        );
        assert_eq!(region_store("embedded", "us"), "embedded");
    }
}
