//! HTTPS and CORS through the real binary: `starling serve --tls-cert --tls-key` with a
//! self-signed certificate made here (rcgen) answers over TLS and not in plain text, switches a
//! WebSocket upgrade over TLS (WSS), presents a
//! new certificate after SIGHUP once its files change, keeps the old one when the new files are
//! bad, does both by itself when the files change on disk (the poll of `--tls-watch-interval`),
//! and `--cors-origins` answers preflights for listed origins only.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, eventually, free_port};
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A self-signed certificate for `localhost`: (DER, certificate PEM, key PEM).
fn self_signed() -> (CertificateDer<'static>, String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    (
        ck.cert.der().clone(),
        ck.cert.pem(),
        ck.signing_key.serialize_pem(),
    )
}

fn write_pair(dir: &Path, cert: &str, key: &str) {
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
}

/// Opens a TLS connection to `localhost` at `port` trusting only `trust` and sends `request`.
fn send(
    port: u16,
    trust: &CertificateDer<'static>,
    request: &str,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let sock = TcpStream::connect(("127.0.0.1", port)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(request.as_bytes()).unwrap();
    tls
}

/// One request over TLS trusting only `trust`; returns (the certificate the server presented,
/// the raw response).
fn https(
    port: u16,
    trust: &CertificateDer<'static>,
    request: &str,
) -> (CertificateDer<'static>, String) {
    let mut tls = send(port, trust, request);
    let mut out = Vec::new();
    // A peer closing without close_notify ends the read with an error after the data.
    let _ = tls.read_to_end(&mut out);
    let presented = tls.conn.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    (presented, String::from_utf8_lossy(&out).into_owned())
}

/// Opens a TLS connection trusting `trust`, sends `request` and returns the response head (the
/// connection may stay open: a WebSocket upgrade).
fn https_head(port: u16, trust: &CertificateDer<'static>, request: &str) -> String {
    let mut tls = send(port, trust, request);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn get(path: &str, extra: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n{extra}connection: close\r\n\r\n")
}

/// A memory-store node in `dir` serving HTTPS with `dir`'s cert.pem and key.pem, and `extra`
/// flags.
fn start_https(dir: &std::path::Path, port: u16, extra: &[&str]) -> Node {
    let path = |f: &str| dir.join(f).display().to_string();
    let mut args: Vec<String> = vec![
        "--store".into(),
        "memory".into(),
        "--data-dir".into(),
        path("data"),
        "--tls-cert".into(),
        path("cert.pem"),
        "--tls-key".into(),
        path("key.pem"),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    Node::start(dir, port, &args)
}

#[test]
fn https_serves_reloads_on_sighup_and_cors_answers_listed_origins() {
    let dir = tempfile::tempdir().unwrap();
    let (der_a, cert_a, key_a) = self_signed();
    write_pair(dir.path(), &cert_a, &key_a);
    let port = free_port();
    let node = start_https(
        dir.path(),
        port,
        &[
            "--cors-origins",
            "https://app.example",
            // The reloads below must be SIGHUP's, not the file watch's.
            "--tls-watch-interval",
            "1h",
        ],
    );
    assert!(node.ready_line.contains("https://"), "{}", node.ready_line);

    let (presented, res) = https(port, &der_a, &get("/healthz", ""));
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.ends_with("ok"), "{res}");
    assert_eq!(presented, der_a);

    // WSS: a signed-up user's WebSocket upgrade over TLS is switched.
    let body = r#"{"handle":"tlsuser","password":"correct horse battery"}"#;
    let signup = format!(
        "POST /v1/users HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let (_, res) = https(port, &der_a, &signup);
    assert!(res.starts_with("HTTP/1.1 201"), "{res}");
    let json = &res[res.find("\r\n\r\n").unwrap() + 4..];
    let token = serde_json::from_str::<serde_json::Value>(json).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let upgrade = format!(
        "GET /v1/ws HTTP/1.1\r\nhost: localhost\r\nauthorization: Bearer {token}\r\n\
         connection: upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    let head = https_head(port, &der_a, &upgrade);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
        "the RFC 6455 accept key: {head}"
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    plain.write_all(get("/healthz", "").as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = plain.read_to_end(&mut out);
    assert!(!out.starts_with(b"HTTP/1.1 200"), "plain HTTP was served");

    // CORS: a listed origin's preflight is allowed, another origin's is not.
    let preflight = |origin: &str| {
        let req = format!(
            "OPTIONS /v1/posts HTTP/1.1\r\nhost: localhost\r\norigin: {origin}\r\n\
             access-control-request-method: POST\r\n\
             access-control-request-headers: authorization, content-type, idempotency-key\r\n\
             connection: close\r\n\r\n"
        );
        https(port, &der_a, &req).1.to_ascii_lowercase()
    };
    let ok = preflight("https://app.example");
    assert!(ok.starts_with("http/1.1 200"), "{ok}");
    assert!(
        ok.contains("access-control-allow-origin: https://app.example"),
        "{ok}"
    );
    assert!(ok.contains("idempotency-key"), "{ok}");
    let refused = preflight("https://evil.example");
    assert!(
        !refused.contains("access-control-allow-origin"),
        "{refused}"
    );
    let (_, simple) = https(
        port,
        &der_a,
        &get("/healthz", "origin: https://app.example\r\n"),
    );
    assert!(
        simple
            .to_ascii_lowercase()
            .contains("access-control-allow-origin: https://app.example"),
        "{simple}"
    );

    // New files and SIGHUP: new handshakes present the new certificate.
    let (der_b, cert_b, key_b) = self_signed();
    write_pair(dir.path(), &cert_b, &key_b);
    let pid = nix::unistd::Pid::from_raw(node.child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        eventually(Duration::from_secs(30), || node
            .log_text()
            .contains("TLS certificate reloaded")),
        "no reload logged"
    );
    let (presented, res) = https(port, &der_b, &get("/healthz", ""));
    assert_eq!(presented, der_b);
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");

    // A bad pair (b's certificate, a's key) is refused and b stays.
    write_pair(dir.path(), &cert_b, &key_a);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    assert!(
        eventually(Duration::from_secs(30), || node
            .log_text()
            .contains("TLS reload failed")),
        "no failed reload logged"
    );
    let (presented, res) = https(port, &der_b, &get("/healthz", ""));
    assert_eq!(presented, der_b);
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(node.terminate().success());
}

#[test]
fn changed_files_are_loaded_without_a_signal_and_a_bad_pair_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (der_a, cert_a, key_a) = self_signed();
    write_pair(dir.path(), &cert_a, &key_a);
    let port = free_port();
    let node = start_https(dir.path(), port, &["--tls-watch-interval", "200ms"]);
    let (presented, _) = https(port, &der_a, &get("/healthz", ""));
    assert_eq!(presented, der_a);

    // New files, no signal: the watch loads them and new handshakes present them.
    let (der_b, cert_b, key_b) = self_signed();
    write_pair(dir.path(), &cert_b, &key_b);
    assert!(
        eventually(Duration::from_secs(30), || node
            .log_text()
            .contains("TLS files changed; certificate reloaded")),
        "no reload logged: {}",
        node.log_text()
    );
    let (presented, res) = https(port, &der_b, &get("/healthz", ""));
    assert_eq!(presented, der_b);
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");

    // A count of reloads, read at /metrics.
    let reloads = |result: &str| -> u64 {
        let (_, metrics) = https(port, &der_b, &get("/metrics", ""));
        let line = format!("starling_tls_reloads_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .unwrap_or_else(|| panic!("no {line} in {metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    assert_eq!(reloads("applied"), 1);
    // (The watch may have seen b's certificate beside a's key in between, and refused it.)
    let failed = reloads("failed");

    // A certificate that does not match the key (one file written: no pair in between) is
    // refused, counted, and b stays; then garbage in the certificate file, the same.
    let (_, cert_c, _) = self_signed();
    std::fs::write(dir.path().join("cert.pem"), &cert_c).unwrap();
    assert!(
        eventually(Duration::from_secs(30), || reloads("failed") == failed + 1),
        "the refused reload is not counted: {}",
        node.log_text()
    );
    assert!(
        node.log_text()
            .contains("TLS files changed but do not load"),
        "{}",
        node.log_text()
    );
    let (presented, res) = https(port, &der_b, &get("/healthz", ""));
    assert_eq!(presented, der_b);
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    assert!(
        eventually(Duration::from_secs(30), || reloads("failed") == failed + 2),
        "the second refused reload is not counted"
    );
    let (presented, res) = https(port, &der_b, &get("/healthz", ""));
    assert_eq!(presented, der_b);
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    // The same bad files are not tried again at every poll.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(reloads("failed"), failed + 2);
    assert_eq!(reloads("applied"), 1);
    assert!(node.terminate().success());
}

#[test]
fn a_key_that_is_not_the_certificates_stops_the_start_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert_a, _) = self_signed();
    let (_, _, key_b) = self_signed();
    write_pair(dir.path(), &cert_a, &key_b);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["serve", "--store", "memory", "--listen"])
        .arg(format!("127.0.0.1:{}", free_port()))
        .arg("--tls-cert")
        .arg(dir.path().join("cert.pem"))
        .arg("--tls-key")
        .arg(dir.path().join("key.pem"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--tls-cert"), "{err}");
}
