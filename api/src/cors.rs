//! CORS for browser clients on other origins (`--cors-origins`): tower-http's layer, answering
//! preflights itself and adding `Access-Control-Allow-Origin` to answers for listed origins.
//!
//! Off by default: the web client the node serves is same-origin and needs none. Sessions are
//! bearer tokens, not cookies, so credentials are never allowed and `*` is safe to offer.

use axum::http::{HeaderName, HeaderValue, Method, header};
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// Which origins may call the API from a browser.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`*`).
    Any,
    /// These origins exactly (`scheme://host[:port]`).
    List(Vec<String>),
}

impl CorsOrigins {
    /// Parses `--cors-origins`: `*`, or comma-separated origins such as `https://app.example`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s == "*" {
            return Ok(CorsOrigins::Any);
        }
        let mut list = Vec::new();
        for o in s.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let ok = (o.starts_with("http://") || o.starts_with("https://"))
                && !o.ends_with('/')
                && o.split_once("://").is_some_and(|(_, rest)| {
                    !rest.is_empty() && !rest.contains('/') && HeaderValue::from_str(o).is_ok()
                });
            if !ok {
                return Err(format!(
                    "--cors-origins {o:?}: expected `*` or origins such as https://app.example[:port]"
                ));
            }
            list.push(o.to_string());
        }
        if list.is_empty() {
            return Err("--cors-origins: give `*` or at least one origin".into());
        }
        Ok(CorsOrigins::List(list))
    }

    /// The layer: the API's methods and request headers, the headers a client reads, a day of
    /// preflight caching.
    pub fn layer(&self) -> CorsLayer {
        let origin = match self {
            CorsOrigins::Any => AllowOrigin::any(),
            CorsOrigins::List(l) => {
                AllowOrigin::list(l.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
            }
        };
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                HeaderName::from_static("idempotency-key"),
            ])
            .expose_headers([header::ETAG, header::LOCATION, header::RETRY_AFTER])
            .max_age(Duration::from_secs(86_400))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_and_nonsense_is_refused() {
        assert_eq!(CorsOrigins::parse(" * ").unwrap(), CorsOrigins::Any);
        assert_eq!(
            CorsOrigins::parse("https://a.example, http://localhost:3000").unwrap(),
            CorsOrigins::List(vec![
                "https://a.example".into(),
                "http://localhost:3000".into()
            ])
        );
        for bad in [
            "",
            "a.example",
            "https://",
            "https://a.example/",
            "https://a.example/path",
            "ftp://a.example",
        ] {
            let err = CorsOrigins::parse(bad).unwrap_err();
            assert!(err.starts_with("--cors-origins"), "{bad:?}: {err}");
        }
    }
}
