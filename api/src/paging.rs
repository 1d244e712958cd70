//! Pagination conventions of every list: the page's body carries `next_cursor`, and the answer a
//! `Link: <…>; rel="next"` header (RFC 8288) naming the next page: the request's own path and
//! query with the one parameter that moves the page replaced. A client can follow `Link`
//! without knowing which parameter that is. The last page has neither.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A page of a list: its JSON body, and the `Link` header of the next page if there is one.
#[derive(Debug)]
pub struct Page<T> {
    status: StatusCode,
    link: Option<HeaderValue>,
    body: T,
}

impl<T> Page<T> {
    /// A 200 page; `next` is the parameter that names the next page and its value.
    pub fn new(uri: &Uri, next: Option<(&str, &str)>, body: T) -> Self {
        Page {
            status: StatusCode::OK,
            link: next.and_then(|(name, value)| next_link(uri, name, value)),
            body,
        }
    }

    /// The same page with another 2xx status (the feed's 206 while it is rebuilt).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
}

impl<T: Serialize> IntoResponse for Page<T> {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body)).into_response();
        if let Some(link) = self.link {
            resp.headers_mut().insert(header::LINK, link);
        }
        resp
    }
}

/// A JSON body already written (the feed's page, spliced from pre-serialized posts).
#[derive(Debug)]
pub struct JsonBytes(pub Vec<u8>);

impl Page<JsonBytes> {
    /// The answer: the body as `application/json`, as [`Page`]'s own answer would send it.
    pub fn into_json_response(self) -> Response {
        let content_type = [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )];
        let mut resp = (self.status, content_type, self.body.0).into_response();
        if let Some(link) = self.link {
            resp.headers_mut().insert(header::LINK, link);
        }
        resp
    }
}

/// `<path?query>; rel="next"`: the request's query with `name` set to `value` (any earlier
/// `name` dropped, the other parameters kept as they were sent). `value` is a cursor or a seq:
/// digits and dots, nothing to escape. None if the result is not a valid header value.
pub fn next_link(uri: &Uri, name: &str, value: &str) -> Option<HeaderValue> {
    let mut query: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(name))
        .collect();
    let moved = format!("{name}={value}");
    query.push(&moved);
    HeaderValue::from_str(&format!(
        "<{}?{}>; rel=\"next\"",
        uri.path(),
        query.join("&")
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_replaces_only_the_moving_parameter() {
        let uri: Uri = "/v1/feed?limit=5&cursor=9&since=3".parse().unwrap();
        assert_eq!(
            next_link(&uri, "cursor", "7").unwrap(),
            "</v1/feed?limit=5&since=3&cursor=7>; rel=\"next\""
        );
        let uri: Uri = "/v1/friends".parse().unwrap();
        assert_eq!(
            next_link(&uri, "cursor", "1").unwrap(),
            "</v1/friends?cursor=1>; rel=\"next\""
        );
        // A parameter whose name only starts with the moving one stays.
        let uri: Uri = "/v1/c/1/messages?after_seq=4&after_seqx=1".parse().unwrap();
        assert_eq!(
            next_link(&uri, "after_seq", "9").unwrap(),
            "</v1/c/1/messages?after_seqx=1&after_seq=9>; rel=\"next\""
        );
    }
}
