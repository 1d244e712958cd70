//! The web client from the real binary: `starling serve` answers `/` with the page and
//! `/web/…` with its modules and styles (right content types, revalidation by ETag), every
//! module the page imports is served, the API beside it is untouched, and `--no-web` turns the
//! client off. The client itself is tested in a real browser by `infra/web-test.sh`.
#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod common;

use common::{Node, free_port, header_of, request_with_head};

/// The modules a file imports (`from './x.js'`), resolved against its own path.
fn imports(path: &str, text: &str) -> Vec<String> {
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    text.split("from '")
        .skip(1)
        .filter_map(|s| s.split_once('\'').map(|(p, _)| p))
        .filter(|p| p.starts_with('.'))
        .map(|p| {
            let mut parts: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
            for seg in p.split('/') {
                match seg {
                    "." => {}
                    ".." => {
                        parts.pop();
                    }
                    s => parts.push(s),
                }
            }
            format!("/{}", parts.join("/"))
        })
        .collect()
}

#[test]
fn the_binary_serves_the_client_and_every_module_it_imports() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        free_port(),
        &["--store".into(), "memory".into()],
    );
    let (s, head, page) = request_with_head(node.port, "GET", "/", None, None, b"");
    assert_eq!(s, 200);
    assert_eq!(
        header_of(&head, "content-type").as_deref(),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        header_of(&head, "cache-control").as_deref(),
        Some("no-cache")
    );
    assert!(
        header_of(&head, "content-security-policy")
            .as_deref()
            .is_some()
    );
    let page = String::from_utf8(page).unwrap();
    assert!(page.contains(r#"<script type="module" src="/web/js/app.js">"#));

    // Walk the module graph from the entry: each module is served as JavaScript.
    let mut todo = vec!["/web/js/app.js".to_string()];
    let mut seen = std::collections::BTreeSet::new();
    while let Some(path) = todo.pop() {
        if !seen.insert(path.clone()) {
            continue;
        }
        let (s, head, body) = request_with_head(node.port, "GET", &path, None, None, b"");
        assert_eq!(s, 200, "{path}");
        assert_eq!(
            header_of(&head, "content-type").as_deref(),
            Some("text/javascript; charset=utf-8"),
            "{path}"
        );
        todo.extend(imports(&path, &String::from_utf8(body).unwrap()));
    }
    assert!(seen.len() >= 10, "the whole client: {seen:?}");
    let (s, head, _) = request_with_head(node.port, "GET", "/web/style.css", None, None, b"");
    assert_eq!(
        (s, header_of(&head, "content-type").as_deref()),
        (200, Some("text/css; charset=utf-8"))
    );

    // Revalidation: the same ETag gets 304 and no body.
    let etag = header_of(&head, "etag").unwrap();
    let (s, head, body) =
        common::get_with_headers(node.port, "/web/style.css", &[("If-None-Match", &etag)]);
    assert_eq!(s, 304, "{head}");
    assert!(body.is_empty());

    // The API beside it is as before, and an unknown file is a problem+json 404.
    assert_eq!(
        node.http("GET", "/healthz", None, b""),
        (200, b"ok".to_vec())
    );
    assert_eq!(node.http("GET", "/openapi.json", None, b"").0, 200);
    let (s, head, _) = request_with_head(node.port, "GET", "/web/nope.js", None, None, b"");
    assert_eq!(
        (s, header_of(&head, "content-type").as_deref()),
        (404, Some("application/problem+json"))
    );
}

#[test]
fn no_web_turns_the_client_off_and_leaves_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        free_port(),
        &["--store".into(), "memory".into(), "--no-web".into()],
    );
    assert_eq!(node.http("GET", "/", None, b"").0, 404);
    assert_eq!(node.http("GET", "/web/js/app.js", None, b"").0, 404);
    assert_eq!(
        node.http("GET", "/healthz", None, b""),
        (200, b"ok".to_vec())
    );
}

#[test]
fn web_dir_serves_the_files_of_a_directory_and_refuses_one_without_them() {
    let dir = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "<p>from the directory</p>").unwrap();
    let web_dir = web.path().display().to_string();
    let node = Node::start(
        dir.path(),
        free_port(),
        &[
            "--store".into(),
            "memory".into(),
            "--web-dir".into(),
            web_dir.clone(),
        ],
    );
    let (s, body) = node.http("GET", "/", None, b"");
    assert_eq!(
        (s, String::from_utf8(body).unwrap()),
        (200, "<p>from the directory</p>".to_string())
    );
    // A file of the client missing from the directory is a 404, not an error of the node.
    assert_eq!(node.http("GET", "/web/js/app.js", None, b"").0, 404);
    // Only the client's own files are served: nothing else of the directory.
    std::fs::write(web.path().join("secret.txt"), "no").unwrap();
    assert_eq!(node.http("GET", "/web/secret.txt", None, b"").0, 404);
    assert_eq!(node.http("GET", "/web/../secret.txt", None, b"").0, 404);
    drop(node);

    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_starling"))
        .args(["serve", "--listen", "127.0.0.1:0", "--store", "memory"])
        .arg("--web-dir")
        .arg(empty.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--web-dir") && err.contains("index.html"),
        "{err}"
    );
}
