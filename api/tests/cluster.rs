//! A real multi-region cluster on loopback: 3 regions × 2 nodes of the `starling` binary with the
//! simulated WAN between them. A write in one region becomes visible in the others; a partition
//! switched on through the admin endpoint holds writes back; healing it lets them through.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, eventually, free_port};
use std::time::Duration;

const ADMIN: &str = "test-admin-token";
const SECRET: &str = "test-cluster-secret-0123456789";
const RTT: &str = "us-eu=100,us-ap=250,eu-ap=180";

struct Cluster {
    _dir: tempfile::TempDir,
    nodes: Vec<(String, Node)>,
    gossip_addrs: Vec<String>,
}

fn start_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut seed: Option<String> = None;
    let mut gossip_addrs = Vec::new();
    for region in ["us", "eu", "ap"] {
        for i in 0..2 {
            let name = format!("{region}{i}");
            let gossip = format!("127.0.0.1:{}", free_port());
            let data = dir.path().join(&name);
            let mut args =
                common::member_args(region, &name, &gossip, SECRET, seed.as_deref(), Some(&data));
            args.extend(["--admin-token", ADMIN, "--wan-rtt", RTT].map(String::from));
            seed.get_or_insert(gossip.clone());
            gossip_addrs.push(gossip);
            nodes.push((
                region.to_string(),
                Node::start(dir.path(), free_port(), &args),
            ));
        }
    }
    Cluster {
        _dir: dir,
        nodes,
        gossip_addrs,
    }
}

fn members_seen(n: &Node) -> usize {
    let (status, body) = n.http("GET", "/v1/cluster", Some(ADMIN), b"");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["members"].as_array().unwrap().len()
}

fn read(n: &Node, key: &str) -> Option<Vec<u8>> {
    match n.http("GET", &format!("/v1/admin/kv/{key}"), Some(ADMIN), b"") {
        (200, body) => Some(body),
        (404, _) => None,
        (s, b) => panic!("GET {key}: {s} {}", String::from_utf8_lossy(&b)),
    }
}

fn set_partition(c: &Cluster, a: &str, b: &str, cut: bool) {
    let links = serde_json::json!({ "links": [
        { "from": a, "to": b, "latency_ms": 50, "jitter_ms": 5, "loss": 0.0, "partitioned": cut },
        { "from": b, "to": a, "latency_ms": 50, "jitter_ms": 5, "loss": 0.0, "partitioned": cut },
    ]});
    // Every node applies the WAN to what it sends, so every node gets the change.
    for (_, n) in &c.nodes {
        let (status, body) = n.http(
            "PUT",
            "/v1/admin/wan",
            Some(ADMIN),
            links.to_string().as_bytes(),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    }
}

#[test]
fn a_write_reaches_every_region_and_partitions_hold_it_back() {
    let c = start_cluster();
    assert!(
        eventually(Duration::from_secs(60), || c
            .nodes
            .iter()
            .all(|(_, n)| members_seen(n) == 5)),
        "every node sees the five others"
    );
    let (us, eu, ap) = (&c.nodes[0].1, &c.nodes[2].1, &c.nodes[4].1);

    // A peer without the cluster secret is refused and counted; the cluster does not notice.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&c.gossip_addrs[0]).unwrap();
        let mut frame = 40u32.to_be_bytes().to_vec();
        frame.extend([1u8; 40]);
        s.write_all(&frame).unwrap();
    }
    assert!(
        eventually(Duration::from_secs(10), || {
            let (_, body) = us.http("GET", "/metrics", None, b"");
            String::from_utf8_lossy(&body).contains("starling_gossip_frames_refused_total 1")
        }),
        "the refused frame shows in /metrics"
    );
    let (_, body) = us.http("GET", "/metrics", None, b"");
    assert!(String::from_utf8_lossy(&body).contains("starling_gossip_members 5"));

    // Without the token, no access; with a wrong one neither.
    assert_eq!(us.http("GET", "/v1/cluster", None, b"").0, 401);
    assert_eq!(us.http("GET", "/v1/cluster", Some("wrong"), b"").0, 401);

    assert_eq!(
        us.http("PUT", "/v1/admin/kv/hello", Some(ADMIN), b"world")
            .0,
        204
    );
    for (region, n) in &c.nodes {
        assert!(
            eventually(Duration::from_secs(20), || read(n, "hello").as_deref()
                == Some(b"world")),
            "the write reached {region}"
        );
    }

    // Cut us from eu: a write in us reaches ap but not eu.
    set_partition(&c, "us", "eu", true);
    assert_eq!(
        us.http("PUT", "/v1/admin/kv/cut", Some(ADMIN), b"during").0,
        204
    );
    assert!(
        eventually(Duration::from_secs(20), || read(ap, "cut").is_some()),
        "ap gets it"
    );
    // ap may relay it to eu: gossip routes around a cut link. Make ap's links to eu cut too.
    let relayed = read(eu, "cut").is_some();
    set_partition(&c, "ap", "eu", true);
    assert_eq!(
        us.http("PUT", "/v1/admin/kv/cut2", Some(ADMIN), b"during")
            .0,
        204
    );
    assert!(eventually(Duration::from_secs(20), || read(ap, "cut2").is_some()));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(read(eu, "cut2"), None, "eu is cut off from us and ap");

    // Heal: eu catches up (push of later writes, anti-entropy for the rest).
    set_partition(&c, "us", "eu", false);
    set_partition(&c, "ap", "eu", false);
    assert!(
        eventually(Duration::from_secs(60), || read(eu, "cut2").as_deref()
            == Some(b"during")),
        "eu caught up after healing (relayed before the second cut: {relayed})"
    );
    // The feed across regions: bob posts in us; alice, who reads in eu, finds it in her feed
    // (eu fans out locally from the replicated post).
    let sign_up = |n: &Node, handle: &str| -> (String, String) {
        let body = serde_json::json!({"handle": handle, "password": "password1"}).to_string();
        let (s, b) = common::http_json(n.port, "POST", "/v1/users", None, &body);
        assert_eq!(s, 201, "{}", String::from_utf8_lossy(&b));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        (
            v["id"].as_str().unwrap().to_string(),
            v["token"].as_str().unwrap().to_string(),
        )
    };
    let (bob, bob_token) = sign_up(us, "bob");
    let (_, alice_token) = sign_up(eu, "alice");
    assert!(
        eventually(Duration::from_secs(30), || eu
            .http(
                "PUT",
                &format!("/v1/following/{bob}"),
                Some(&alice_token),
                b""
            )
            .0
            == 204),
        "bob's account reaches eu and alice follows him there"
    );
    let body = serde_json::json!({"text": "hello from us"}).to_string();
    let (s, _) = common::http_json(us.port, "POST", "/v1/posts", Some(&bob_token), &body);
    assert_eq!(s, 201);
    assert!(
        eventually(Duration::from_secs(30), || {
            let (s, b) = eu.http("GET", "/v1/feed", Some(&alice_token), b"");
            s == 200 && String::from_utf8_lossy(&b).contains("hello from us")
        }),
        "a post written in us is in a follower's feed in eu"
    );
    for (_, n) in c.nodes {
        assert!(n.terminate().success(), "clean exit");
    }
}
