//! The web client: the files of the repository's `web/` directory (plain ES modules and CSS,
//! no build step), embedded in the binary with `include_bytes!` and served by `starling serve`
//! at `/` (the page) and `/web/…` (its modules, styles and icon). `--no-web` leaves them out.
//!
//! The client speaks only the public API (`/v1/*`, `/v1/ws`) from the same origin, so it needs
//! no CORS. Files are not fingerprinted (there is no build step to rename them), so every answer
//! carries `Cache-Control: no-cache` with an `ETag`: a browser revalidates on each load and gets
//! `304 Not Modified` (no body) while the binary is the same.
//!
//! **Architecture Invariant:** nothing here reads the node's state; the client is a consumer of
//! the public API like any other.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::borrow::Cow;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// One embedded file: where it is served, its content type, its bytes.
#[derive(Debug)]
pub struct Asset {
    /// Path under `web/` (served at `/web/<path>`; `index.html` also at `/`).
    pub path: &'static str,
    /// `Content-Type` it is served with.
    pub content_type: &'static str,
    /// The file.
    pub bytes: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $ct:expr) => {
        Asset {
            path: $path,
            content_type: $ct,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of the client. `web_files_are_all_embedded` (below) fails when a file of `web/`
/// is missing here.
pub static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
    asset!("bell.svg", "image/svg+xml"),
    asset!("js/app.js", JS),
    asset!("js/api.js", JS),
    asset!("js/chat.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/media.js", JS),
    asset!("js/types.js", JS),
    asset!("js/users.js", JS),
    asset!("js/views/auth.js", JS),
    asset!("js/views/chat.js", JS),
    asset!("js/views/feed.js", JS),
    asset!("js/views/notifications.js", JS),
    asset!("js/views/people.js", JS),
    asset!("js/views/post.js", JS),
    asset!("js/views/profile.js", JS),
];

/// The page's Content-Security-Policy: scripts, styles and connections to this origin only,
/// images also from `blob:` (media is fetched with the bearer token and shown from a blob URL).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the client's files come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// The copy embedded in the binary.
    Embedded,
    /// The files of a `web/` directory, read on each request (`--web-dir`, for working on the
    /// client without rebuilding the binary). Only the files of [`ASSETS`] are served from it.
    Dir(PathBuf),
}

impl Source {
    /// Refuses a directory without the client's page (`index.html`).
    pub fn check(&self) -> Result<(), WebError> {
        match self {
            Source::Dir(dir) if !dir.join("index.html").is_file() => {
                Err(WebError::NoIndex(dir.clone()))
            }
            _ => Ok(()),
        }
    }
}

/// Why the client's files cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// `--web-dir` names a directory without `index.html`.
    #[error("--web-dir {}: no index.html there (give the repository's web/ directory)", .0.display())]
    NoIndex(PathBuf),
}

/// The web client at `/`: a group of `starling serve`'s settings (flags, `STARLING_<FLAG>` and
/// `--config` keys, each declared once here), flattened into [`crate::config::ServeArgs`];
/// [`source`](Self::source) is where the files come from, [`Source::check`] refuses a directory
/// without them.
#[derive(
    clap::Args, serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq, Eq,
)]
#[serde(default)]
pub struct WebSettings {
    /// Do not serve the web client at `/` (the API is served either way).
    #[arg(long, env = "STARLING_NO_WEB")]
    pub no_web: bool,
    /// Serve the web client's files from this directory (the repository's `web/`) instead of
    /// the copy embedded in the binary: for working on the client without rebuilding.
    #[arg(long, env = "STARLING_WEB_DIR")]
    pub web_dir: Option<PathBuf>,
}

impl WebSettings {
    /// Where the client's files come from; `None`: `--no-web`.
    pub fn source(self) -> Option<Source> {
        if self.no_web {
            return None;
        }
        Some(self.web_dir.map_or(Source::Embedded, Source::Dir))
    }
}

/// The routes of the web client.
pub fn routes(source: Source) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/web/{*path}", get(file))
        .with_state(Arc::new(source))
}

async fn index(State(source): State<Arc<Source>>, headers: HeaderMap) -> Response {
    match find("index.html") {
        Some(i) => serve(&source, i, &headers).await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn file(
    State(source): State<Arc<Source>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    match find(&path) {
        Some(i) => serve(&source, i, &headers).await,
        None => {
            crate::problem::ApiError::NotFoundMsg(format!("no file /web/{path}")).into_response()
        }
    }
}

fn find(path: &str) -> Option<usize> {
    ASSETS.iter().position(|a| a.path == path)
}

fn etag_of(bytes: &[u8]) -> String {
    let mut h = std::hash::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

/// The ETag of each embedded asset, computed once (a hash of its bytes).
fn etags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| ASSETS.iter().map(|a| etag_of(a.bytes)).collect())
}

async fn serve(source: &Source, i: usize, headers: &HeaderMap) -> Response {
    let asset = &ASSETS[i];
    let (bytes, etag): (Cow<'static, [u8]>, Cow<'static, str>) = match source {
        Source::Embedded => (Cow::Borrowed(asset.bytes), Cow::Borrowed(&etags()[i])),
        Source::Dir(dir) => match tokio::fs::read(dir.join(asset.path)).await {
            Ok(b) => {
                let tag = etag_of(&b);
                (Cow::Owned(b), Cow::Owned(tag))
            }
            Err(e) => {
                return crate::problem::ApiError::NotFoundMsg(format!(
                    "web file {} cannot be read: {e}",
                    asset.path
                ))
                .into_response();
            }
        },
    };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut h = HeaderMap::new();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.path == "index.html" {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    let body = match bytes {
        Cow::Borrowed(b) => axum::body::Bytes::from_static(b),
        Cow::Owned(v) => axum::body::Bytes::from(v),
    };
    (StatusCode::OK, h, body).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test
    use super::*;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    /// Every file the page can load is embedded, and nothing else (tests, npm files) is.
    #[test]
    fn web_files_are_all_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
        let mut on_disk = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).unwrap() {
                let p = e.unwrap().path();
                let rel = p.strip_prefix(&root).unwrap().to_string_lossy().to_string();
                if p.is_dir() {
                    if !matches!(rel.as_str(), "tests" | "node_modules") {
                        stack.push(p);
                    }
                } else if [".html", ".css", ".js", ".svg"]
                    .iter()
                    .any(|x| rel.ends_with(x))
                {
                    on_disk.push(rel);
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
    }

    async fn get(path: &str, etag: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(t) = etag {
            req = req.header(header::IF_NONE_MATCH, t);
        }
        routes(Source::Embedded)
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_its_modules_and_revalidation() {
        let page = get("/", None).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(
            page.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        assert!(page.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let etag = page.headers()[header::ETAG].to_str().unwrap().to_string();
        assert_eq!(
            get("/", Some(&etag)).await.status(),
            StatusCode::NOT_MODIFIED
        );
        let js = get("/web/js/app.js", None).await;
        assert_eq!(js.status(), StatusCode::OK);
        assert_eq!(js.headers()[header::CONTENT_TYPE], JS);
        assert_eq!(js.headers()[header::CACHE_CONTROL], "no-cache");
        assert_eq!(
            get("/web/js/app.js", Some("\"other\"")).await.status(),
            StatusCode::OK
        );
        assert_eq!(
            get("/web/package.json", None).await.status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get("/web/../Cargo.toml", None).await.status(),
            StatusCode::NOT_FOUND
        );
    }
}
