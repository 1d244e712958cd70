//! Running real `starling` processes from tests: start, wait for the ready line, talk HTTP
//! (through [`http`], the one client of the tests), and kill them when the test ends (even when
//! it fails).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)] // shared by several test files

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A real 1×1 PNG: media uploads are checked against their declared type by magic numbers.
pub const PNG_1X1: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89\x00\x00\x00\x0bIDATx\xdac`\x00\x02\x00\x00\x05\x00\x01\xe9\xfa\xdc\xd8\x00\x00\x00\x00IEND\xaeB`\x82";

/// A running node; killed on drop.
pub struct Node {
    pub child: Child,
    pub port: u16,
    pub ready_line: String,
    /// Everything the node wrote to stdout and stderr so far.
    pub log: Arc<Mutex<String>>,
}

impl Node {
    /// Starts `starling serve` with `args` in `dir` and waits (≤ 60 s) for its ready line.
    pub fn start(dir: &Path, port: u16, args: &[String]) -> Node {
        Self::start_logging(dir, port, args, "info")
    }

    /// A node on the memory store, with the per-address sign-up and login limit lifted (a test
    /// signs up many users from one address), and `extra` flags.
    pub fn memory(dir: &Path, extra: &[&str]) -> Node {
        let args: Vec<String> = ["--store", "memory", "--auth-per-minute", "1000000"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect();
        Self::start(dir, free_port(), &args)
    }

    /// As [`Node::start`], with `STARLING_LOG=filter`.
    pub fn start_logging(dir: &Path, port: u16, args: &[String], filter: &str) -> Node {
        Self::start_with_env(dir, port, args, filter, &[])
    }

    /// As [`Node::start_logging`], with these environment variables set for the node.
    pub fn start_with_env(
        dir: &Path,
        port: u16,
        args: &[String],
        filter: &str,
        env: &[(String, String)],
    ) -> Node {
        // For diagnosis (e.g. infra/soak.sh under heaptrack): `STARLING_TEST_WRAP` is a command
        // the node is run under, `STARLING_TEST_BIN` another `starling` binary.
        let bin = std::env::var("STARLING_TEST_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_starling").to_string());
        let wrap = std::env::var("STARLING_TEST_WRAP").unwrap_or_default();
        let mut words = wrap.split_whitespace().chain([bin.as_str()]);
        let mut child = Command::new(words.next().unwrap())
            .args(words)
            .arg("serve")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .current_dir(dir)
            .env("STARLING_LOG", filter)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        // Stderr is copied to the test's stderr (shown when it fails) and to the log.
        let err = BufReader::new(child.stderr.take().unwrap());
        let err_log = log.clone();
        std::thread::spawn(move || {
            for line in err.lines().map_while(Result::ok) {
                eprintln!("{line}");
                let mut l = err_log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready_line = loop {
            assert!(Instant::now() < deadline, "no ready line in 60 s");
            let line = lines.next().expect("the node exited early").unwrap();
            {
                let mut l = log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
            if line.contains("starling listening on") {
                break line;
            }
        };
        // Keep draining stdout so the node never blocks on a full pipe.
        let out_log = log.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut l = out_log.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        Node {
            child,
            port,
            ready_line,
            log,
        }
    }

    /// The node's output so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// One HTTP request; returns (status, body).
    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> (u16, Vec<u8>) {
        http(self.port, method, path, token, body)
    }

    /// The `/metrics` sample `series` (name and labels as written), 0 when absent or when the
    /// node does not answer.
    pub fn metric(&self, series: &str) -> f64 {
        Metrics::read(format!("127.0.0.1:{}", self.port))
            .and_then(|m| m.get(series))
            .unwrap_or(0.0)
    }

    /// Stops the node with SIGTERM and waits for a clean exit.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    request(port, method, path, token, None, body)
}

/// One request with a JSON body.
pub fn http_json(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, Vec<u8>) {
    request(
        port,
        method,
        path,
        token,
        Some("application/json"),
        body.as_bytes(),
    )
}

pub fn request(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, Vec<u8>) {
    let (status, _, body) = request_with_head(port, method, path, token, content_type, body);
    (status, body)
}

/// One request; returns (status, the response head as text, body).
pub fn request_with_head(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = [
        auth.as_deref().map(|a| ("Authorization", a)),
        content_type.map(|c| ("Content-Type", c)),
    ]
    .into_iter()
    .flatten()
    .collect();
    let r = http::send(format!("127.0.0.1:{port}"), method, path, &headers, body);
    (r.status, r.head, r.body)
}

/// A GET with these request headers (e.g. `Range`, `If-None-Match`; a bearer token is
/// `("Authorization", "Bearer …")`): (status, the response head, body).
pub fn get_with_headers(port: u16, path: &str, headers: &[(&str, &str)]) -> (u16, String, Vec<u8>) {
    let r = http::send(format!("127.0.0.1:{port}"), "GET", path, headers, b"");
    (r.status, r.head, r.body)
}

/// Polls `f` every 100 ms until it is true or `max` passes.
pub fn eventually(max: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}

/// The runtime a test's async clients run on: two workers (the machine's two cores), every
/// driver on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A runtime on the test's own thread, every driver on: for a test that waits on one future at a
/// time (a keyspace dropped, one socket read).
pub fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub mod chat;
pub mod http;
#[path = "../../../gossip/tests/common/port.rs"]
pub mod port;

#[allow(unused_imports)] // not every test file uses both
pub use http::{Metrics, header_of};
pub use port::free_port;

/// A JSON call on `n`: the status and the body as JSON (null when it is not JSON). A null
/// `body` sends no body.
pub fn call_json(
    n: &Node,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &serde_json::Value,
) -> (u16, serde_json::Value) {
    let (s, b) = if body.is_null() {
        n.http(method, path, token, b"")
    } else {
        http_json(n.port, method, path, token, &body.to_string())
    };
    (
        s,
        serde_json::from_slice(&b).unwrap_or(serde_json::Value::Null),
    )
}

/// Signs up `handle` (password `password1`) on `n`: (id, token).
pub fn sign_up_user(n: &Node, handle: &str) -> (String, String) {
    sign_up_at(n.port, handle)
}

/// Signs up `handle` (password `password1`) on the node at `port`: (id, token).
pub fn sign_up_at(port: u16, handle: &str) -> (String, String) {
    sign_up_with(port, handle, "password1")
}

/// Signs up `handle` with `password` on the node at `port`: (id, token).
pub fn sign_up_with(port: u16, handle: &str, password: &str) -> (String, String) {
    let body = serde_json::json!({"handle": handle, "password": password});
    let (s, b) = http_json(port, "POST", "/v1/users", None, &body.to_string());
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
    assert_eq!(s, 201, "{v}");
    (
        v["id"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    )
}

/// The flags of a cluster member: region `region`, node `name`, gossip on `gossip` under
/// `secret`, joining through `seed` (none for the first member), its data in `data` (the
/// default directory when `None`).
pub fn member_args(
    region: &str,
    name: &str,
    gossip: &str,
    secret: &str,
    seed: Option<&str>,
    data: Option<&Path>,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "--region",
        region,
        "--node-id",
        name,
        "--gossip-listen",
        gossip,
        "--cluster-secret",
        secret,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(d) = data {
        args.extend(["--data-dir".to_string(), d.display().to_string()]);
    }
    if let Some(s) = seed {
        args.extend(["--seeds".to_string(), s.to_string()]);
    }
    args
}

/// One node per region, `us` and `eu`, 40 ms apart, gossiping under `secret`, each with
/// `extra` flags: (us, eu).
pub fn two_regions(dir: &Path, secret: &str, extra: &[&str]) -> (Node, Node) {
    let mut seed: Option<String> = None;
    let mut nodes = Vec::new();
    for region in ["us", "eu"] {
        let gossip = format!("127.0.0.1:{}", free_port());
        let data = dir.join(region);
        let mut args = member_args(
            region,
            region,
            &gossip,
            secret,
            seed.as_deref(),
            Some(&data),
        );
        args.extend(
            ["--wan-rtt", "us-eu=40", "--auth-per-minute", "1000000"]
                .iter()
                .chain(extra)
                .map(|s| s.to_string()),
        );
        seed.get_or_insert(gossip);
        nodes.push(Node::start(dir, free_port(), &args));
    }
    let eu = nodes.pop().unwrap();
    (nodes.pop().unwrap(), eu)
}
