//! What the REST handlers take from a request, and how they write times: JSON body, path and
//! query extractors whose every rejection is a problem+json 4xx, id parsing, list parameters
//! (limit, cursor, since), the declared body length, and the RFC 3339 times of responses.

use crate::problem::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use std::time::{Duration, UNIX_EPOCH};

/// Largest JSON body accepted, in bytes.
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// A JSON body: 413 when too large, 400 when not JSON (or not UTF-8), 422 when well-formed but
/// of the wrong shape. Every body of the API is an object: anything else is 422 (serde would
/// otherwise read a struct from an array of its fields, `[null, null]`).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| {
                let mime = ct.split(';').next().unwrap_or_default().trim();
                mime.eq_ignore_ascii_case("application/json")
            });
        if !is_json {
            return Err(ApiError::BadRequest(
                "expected a body with Content-Type: application/json".into(),
            ));
        }
        // A declared length over the limit is refused before any of the body is awaited: a
        // client announcing gigabytes and sending nothing must not hold the request open.
        if declared_length(&req).is_some_and(|n| n > MAX_JSON_BODY as u64) {
            return Err(ApiError::TooLarge(format!(
                "a JSON body is at most {MAX_JSON_BODY} bytes"
            )));
        }
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge(format!("a JSON body is at most {MAX_JSON_BODY} bytes"))
            } else {
                ApiError::BadRequest("the body could not be read".into())
            }
        })?;
        if body.len() > MAX_JSON_BODY {
            return Err(ApiError::TooLarge(format!(
                "a JSON body is at most {MAX_JSON_BODY} bytes"
            )));
        }
        json_object(&body).map(JsonBody)
    }
}

/// Decodes a JSON object body into `T`: 400 when not JSON, 422 when it is not an object or not
/// of `T`'s shape. An object is parsed once, straight into `T`; anything else is read (without
/// being built) only to tell malformed JSON (400) from JSON that is not an object (422).
pub fn json_object<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let malformed = |e: serde_json::Error| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::Invalid(format!("invalid body: {e}")),
            _ => ApiError::BadRequest(format!("malformed JSON: {e}")),
        }
    };
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(malformed)?;
        return Err(ApiError::Invalid("the body is a JSON object".into()));
    }
    serde_json::from_slice(body).map_err(malformed)
}

/// Path parameters (axum's `Path`): a parameter that does not deserialize is a problem+json 400
/// (a route declaring parameters its handler does not take is a bug: 500).
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) if e.status().is_server_error() => Err(ApiError::Internal(e.body_text())),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// The query string (axum's `Query`): one that does not deserialize (a repeated or malformed
/// parameter) is a problem+json 400.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|e| ApiError::BadRequest(e.body_text()))
    }
}

/// A raw body (axum's `Bytes`): 413 over the route's limit, 400 when it cannot be read.
#[derive(Debug)]
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state)
            .await
            .map(RawBody)
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::TooLarge("the body is over this route's limit".into())
                } else {
                    ApiError::BadRequest("the body could not be read".into())
                }
            })
    }
}

/// The `Content-Length` a request declares, if any and well-formed.
pub fn declared_length<B>(req: &axum::http::Request<B>) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A JSON integer of 0 to 2^63 - 1, written as an integer or as an integral number (`12.0`,
/// which JSON Schema counts as an integer). For `#[serde(deserialize_with)]`.
pub fn integral_u63<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    use serde::de::Error;
    let n = serde_json::Number::deserialize(d)?;
    let v = match (n.as_u64(), n.as_f64()) {
        (Some(v), _) => Some(v),
        // Integral and below 2^63 (`i64::MAX as f64` rounds to 2^63 exactly, so `<` bounds it).
        (None, Some(f)) if f.fract() == 0.0 && (0.0..i64::MAX as f64).contains(&f) => {
            Some(f as u64)
        }
        _ => None,
    };
    v.filter(|v| i64::try_from(*v).is_ok())
        .ok_or_else(|| D::Error::custom(format!("{n} is not an integer of 0 to 2^63 - 1")))
}

/// Parses an id sent as a decimal string: 1 to 19 ASCII digits (`contract::ID_PATTERN`; no
/// sign, no spaces, which `u64::from_str` would take or refuse inconsistently with the document).
pub fn parse_id(s: &str) -> Result<u64, ApiError> {
    let digits = !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
    digits
        .then(|| s.parse().ok())
        .flatten()
        .ok_or_else(|| ApiError::BadRequest(format!("{s:?} is not an id")))
}

/// `?limit=&cursor=` of list endpoints.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// 1–100, default 20.
    #[param(value_type = Option<u8>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// Opaque cursor from a previous page's `next_cursor` (or its `Link: rel="next"`).
    #[param(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
}

/// A list's `since` query parameter, the id of the newest `what` the client already has (the
/// feed's and the notifications' pages stop there).
pub fn parse_since(raw: Option<&str>, what: &str) -> Result<Option<u64>, ApiError> {
    raw.map(|s| parse_id(s).map_err(|_| ApiError::BadRequest(format!("since is a {what} id"))))
        .transpose()
}

impl ListParams {
    /// The validated limit and cursor.
    pub fn parse(&self) -> Result<(usize, Option<u64>), ApiError> {
        let limit = match &self.limit {
            None => 20,
            Some(l) => match l.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) && l.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(ApiError::BadRequest("limit is 1 to 100".into())),
            },
        };
        let cursor = match &self.cursor {
            None => None,
            Some(c) => {
                Some(parse_id(c).map_err(|_| ApiError::BadRequest("invalid cursor".into()))?)
            }
        };
        Ok((limit, cursor))
    }
}

/// RFC 3339 (UTC, milliseconds) of a time in ms since the epoch.
pub fn rfc3339(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_params() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(ListParams::default().parse().unwrap(), (20, None));
        let p = ListParams {
            limit: Some("101".into()),
            cursor: None,
        };
        assert!(p.parse().is_err());
        let p = ListParams {
            limit: Some("5".into()),
            cursor: Some("x".into()),
        };
        assert!(p.parse().is_err());
        for bad in ["12a", "+5", "-1", " 1", "", "12345678901234567890"] {
            assert!(parse_id(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_id("12").unwrap(), 12);
    }
}
