//! The real `starling serve` process: starts with no flags but a data directory and port, says
//! where it listens, answers `/healthz`, stops cleanly on SIGTERM; refuses a foreign directory
//! with one clear error.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_starts_answers_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env("STARLING_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let deadline = Instant::now() + Duration::from_secs(30);
    let ready = loop {
        assert!(Instant::now() < deadline, "no ready line in 30 s");
        let line = lines.next().expect("the node exited early").unwrap();
        if line.contains("starling listening on") {
            break line;
        }
    };
    assert!(
        ready.contains(&format!("http://127.0.0.1:{port}")),
        "{ready}"
    );
    assert!(
        ready.contains("starling-data"),
        "says where the data lives: {ready}"
    );
    let resp = http_get(port, "/healthz");
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("ok"), "{resp}");
    assert!(http_get(port, "/readyz").starts_with("HTTP/1.1 200"));
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert!(status.success(), "clean exit on SIGTERM: {status}");
    assert!(dir.path().join("starling-data/STARLING_STORE").exists());
}

#[test]
fn a_foreign_data_dir_is_one_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a Starling data directory"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}
