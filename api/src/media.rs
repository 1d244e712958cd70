//! Media downloads a browser or a CDN can make: signed, expiring URLs (an `<img src>` carries
//! no bearer header), validators (`ETag`, `If-None-Match` → 304, `Cache-Control`) and single
//! byte ranges (`Range` → 206, 416 when unsatisfiable).
//!
//! A signed URL is `/v1/media/{id}?exp=<unix seconds>&sig=<hex>`, where `sig` is
//! HMAC-SHA256 over the media id and the expiry under the node's media-URL key. Every node of a
//! region derives the same key from the same secret (`--media-url-secret`, else the cluster
//! secret), so a URL signed by one node opens the media on any other.

use crate::config::values::{S3Bucket, Secret};
use crate::problem::ApiError;
use axum::http::{HeaderMap, HeaderValue, header};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Where media is kept and what its signed URLs are derived from: a group of `starling serve`'s
/// settings (flags, `STARLING_<FLAG>` and `--config` keys, each declared once here), flattened
/// into [`crate::config::ServeArgs`]. The two defaults that depend on other settings are derived
/// here and nowhere else: [`dir`](Self::dir) (under the data directory) and
/// [`url_secret`](Self::url_secret) (the cluster secret).
#[derive(
    clap::Args, serde::Serialize, serde::Deserialize, Clone, Debug, Default, PartialEq, Eq,
)]
#[serde(default)]
pub struct MediaSettings {
    /// Directory of the media blob store (default: DATA_DIR/media).
    #[arg(long, env = "STARLING_MEDIA_DIR")]
    pub media_dir: Option<PathBuf>,
    /// An S3-compatible bucket for media instead of the directory, as `s3://BUCKET`; endpoint
    /// and credentials from the usual AWS_* variables (AWS_ENDPOINT, AWS_ACCESS_KEY_ID, …).
    #[arg(long, env = "STARLING_MEDIA_STORE")]
    pub media_store: Option<S3Bucket>,
    /// Secret the signed media URLs are derived from (at least 16 characters; the same on every
    /// node of a region). Default: the cluster secret; without either, a random key per process
    /// (a URL then opens the media on the node that signed it only).
    #[arg(long, env = "STARLING_MEDIA_URL_SECRET")]
    pub media_url_secret: Option<Secret>,
}

impl MediaSettings {
    /// The media blob directory: `--media-dir`, else `media` under the data directory.
    pub fn dir(&self, data_dir: &Path) -> PathBuf {
        self.media_dir
            .clone()
            .unwrap_or_else(|| data_dir.join("media"))
    }

    /// The secret of signed media URLs: `--media-url-secret`, else the cluster secret; `None`:
    /// neither is set (a random key per process).
    pub fn url_secret<'a>(&'a self, cluster_secret: Option<&'a str>) -> Option<&'a str> {
        self.media_url_secret
            .as_ref()
            .map(Secret::as_str)
            .or(cluster_secret)
    }
}

/// Longest life of a signed URL: 7 days.
pub const MAX_URL_TTL_SECS: u64 = 7 * 24 * 3600;
/// Life of a signed URL when the caller names none: 1 hour.
pub const DEFAULT_URL_TTL_SECS: u64 = 3600;
/// How long a client may keep media it fetched with a bearer token (media never changes).
const PRIVATE_MAX_AGE_SECS: u64 = 24 * 3600;
/// What the signed message starts with (a version, so a later scheme cannot be confused).
const DOMAIN: &[u8] = b"starling-media-url-v1\0";

/// Signs and checks media URLs with one 256-bit key.
#[derive(Clone)]
pub struct UrlSigner {
    key: Arc<[u8; 32]>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(..)")
    }
}

/// Why a signed URL is refused (all answered 403, with the reason as the detail).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    /// The signature does not match the id and expiry.
    #[error("the media URL's signature is not valid")]
    Bad,
    /// The URL's time is over.
    #[error("the media URL expired")]
    Expired,
}

impl UrlSigner {
    /// The key derived from a secret shared by the nodes of a region.
    pub fn from_secret(secret: &str) -> Self {
        let mut mac = hmac_with(secret.as_bytes());
        mac.update(b"starling media URL key v1");
        let mut key = [0u8; 32];
        key.copy_from_slice(&mac.finalize().into_bytes());
        UrlSigner { key: Arc::new(key) }
    }

    /// A random key: URLs it signs open media on this process only. (Should the system have no
    /// randomness to give, the key is derived from the time and the process id, and that is
    /// logged as an error.)
    pub fn random() -> Self {
        let mut key = [0u8; 32];
        if let Err(e) = getrandom::fill(&mut key) {
            tracing::error!(error = %e, "no randomness for the media URL key");
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            return Self::from_secret(&format!("{nanos}/{}", std::process::id()));
        }
        UrlSigner { key: Arc::new(key) }
    }

    fn mac(&self, id: u64, exp: u64) -> Hmac<Sha256> {
        let mut mac = hmac_with(&self.key[..]);
        mac.update(DOMAIN);
        mac.update(&id.to_be_bytes());
        mac.update(&exp.to_be_bytes());
        mac
    }

    /// The signature of media `id` until `exp` (unix seconds), as lowercase hex.
    pub fn sign(&self, id: u64, exp: u64) -> String {
        hex(&self.mac(id, exp).finalize().into_bytes())
    }

    /// The path of a signed URL of media `id` valid until `exp`.
    pub fn url(&self, id: u64, exp: u64) -> String {
        format!("/v1/media/{id}?exp={exp}&sig={}", self.sign(id, exp))
    }

    /// Whether `sig` signs media `id` until `exp`, and `exp` is not past `now` (unix seconds).
    /// The comparison takes the same time whatever the signature.
    pub fn verify(&self, id: u64, exp: u64, sig: &str, now: u64) -> Result<(), SignatureError> {
        let bytes = unhex(sig).ok_or(SignatureError::Bad)?;
        self.mac(id, exp)
            .verify_slice(&bytes)
            .map_err(|_| SignatureError::Bad)?;
        if now > exp {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }
}

fn hmac_with(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length: this cannot fail.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The bytes of an even-length hex string of at most 64 digits.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 64 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Unix seconds now.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `?exp=&sig=` of a signed media URL, when the request has them.
#[derive(Debug, PartialEq, Eq)]
pub struct Signed {
    /// Expiry, unix seconds.
    pub exp: u64,
    /// The signature, as sent.
    pub sig: String,
}

/// The `exp` and `sig` of a query string: `None` when neither is there; 400 when either is
/// repeated or `exp` is not a number; 403 when one comes without the other (a signature that
/// cannot verify, as a wrong one: each parameter alone is well-formed). Other parameters are
/// ignored (a CDN may add its own).
pub fn signed_query(query: Option<&str>) -> Result<Option<Signed>, ApiError> {
    let (mut exp, mut sig) = (None, None);
    for pair in query.unwrap_or_default().split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match k {
            "exp" => &mut exp,
            "sig" => &mut sig,
            _ => continue,
        };
        if slot.replace(v).is_some() {
            return Err(ApiError::BadRequest(format!("{k} is repeated")));
        }
    }
    match (exp, sig) {
        (None, None) => Ok(None),
        (Some(e), Some(s)) => {
            let exp = e
                .parse::<u64>()
                .ok()
                .filter(|_| e.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| ApiError::BadRequest("exp is unix seconds".into()))?;
            Ok(Some(Signed {
                exp,
                sig: s.to_string(),
            }))
        }
        _ => Err(ApiError::Forbidden(
            "a signed media URL needs both exp and sig",
        )),
    }
}

/// The validated `?ttl=` of `GET /v1/media/{id}/url`: 1 s to 7 days, default 1 hour.
pub fn ttl(raw: Option<&str>) -> Result<u64, ApiError> {
    match raw {
        None => Ok(DEFAULT_URL_TTL_SECS),
        Some(t) => match t.parse::<u64>() {
            Ok(n)
                if (1..=MAX_URL_TTL_SECS).contains(&n) && t.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(n)
            }
            _ => Err(ApiError::BadRequest(format!(
                "ttl is 1 to {MAX_URL_TTL_SECS} seconds"
            ))),
        },
    }
}

/// The strong validator of a media object: its id (media is never changed, only added).
pub fn etag(id: u64) -> String {
    format!("\"m{id}\"")
}

/// Whether `If-None-Match` names `etag` (or is `*`): the client's copy is current.
pub fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

/// `Cache-Control` of a download: a signed URL may be kept by anyone (a CDN too) until it
/// expires; a bearer download only by the client.
pub fn cache_control(signed_until: Option<u64>, now: u64) -> HeaderValue {
    let v = match signed_until {
        Some(exp) => format!("public, max-age={}, immutable", exp.saturating_sub(now)),
        None => format!("private, max-age={PRIVATE_MAX_AGE_SECS}, immutable"),
    };
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static("private, no-cache"))
}

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum RangeAsk {
    /// The whole object (no range, a malformed one, several, or an `If-Range` that does not
    /// match: RFC 9110 lets a server answer those with 200).
    Whole,
    /// One satisfiable range (inclusive).
    Part(RangeInclusive<u64>),
    /// No byte of the object is in the range: 416.
    Unsatisfiable,
}

/// The range a request asks for, of an object of `size` bytes whose validator is `etag`.
pub fn range(headers: &HeaderMap, size: u64, etag: &str) -> RangeAsk {
    use http_range_header::RangeUnsatisfiableError as E;
    let Some(raw) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return RangeAsk::Whole;
    };
    if let Some(cond) = headers.get(header::IF_RANGE)
        && cond.to_str().ok().map(str::trim) != Some(etag)
    {
        return RangeAsk::Whole;
    }
    let parsed = match http_range_header::parse_range_header(raw) {
        Ok(p) => p,
        Err(E::Unsatisfiable | E::Rejected(_)) => return RangeAsk::Unsatisfiable,
        Err(_) => return RangeAsk::Whole,
    };
    match parsed.validate(size) {
        Ok(mut ranges) if ranges.len() == 1 => match ranges.pop() {
            Some(r) => RangeAsk::Part(r),
            None => RangeAsk::Whole,
        },
        Ok(_) => RangeAsk::Whole,
        Err(E::Unsatisfiable | E::Rejected(_)) => RangeAsk::Unsatisfiable,
        Err(_) => RangeAsk::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_opens_its_media_until_it_expires() {
        let k = UrlSigner::from_secret("a-secret-of-16-chars");
        let sig = k.sign(42, 1000);
        assert_eq!(sig.len(), 64);
        assert_eq!(k.verify(42, 1000, &sig, 999), Ok(()));
        assert_eq!(k.verify(42, 1000, &sig, 1000), Ok(()));
        assert_eq!(k.verify(42, 1000, &sig, 1001), Err(SignatureError::Expired));
        // Another id, another expiry, another key, a changed or malformed signature: refused.
        assert_eq!(k.verify(43, 1000, &sig, 0), Err(SignatureError::Bad));
        assert_eq!(k.verify(42, 1001, &sig, 0), Err(SignatureError::Bad));
        let other = UrlSigner::from_secret("another-secret-of-16");
        assert_eq!(other.verify(42, 1000, &sig, 0), Err(SignatureError::Bad));
        let mut flipped = sig.clone().into_bytes();
        flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(k.verify(42, 1000, &flipped, 0), Err(SignatureError::Bad));
        for bad in ["", "zz", "abc", &"0".repeat(66), &sig[..62]] {
            assert_eq!(
                k.verify(42, 1000, bad, 0),
                Err(SignatureError::Bad),
                "{bad}"
            );
        }
        // The same secret gives the same key on every node; random keys differ.
        let again = UrlSigner::from_secret("a-secret-of-16-chars");
        assert_eq!(again.sign(42, 1000), sig);
        assert_ne!(
            UrlSigner::random().sign(42, 1000),
            UrlSigner::random().sign(42, 1000)
        );
        assert_eq!(k.url(42, 1000), format!("/v1/media/42?exp=1000&sig={sig}"));
    }

    #[test]
    fn the_signed_query_is_both_parameters_once() {
        assert_eq!(signed_query(None).unwrap(), None);
        assert_eq!(signed_query(Some("x=1")).unwrap(), None);
        assert_eq!(
            signed_query(Some("exp=5&cdn=1&sig=ab")).unwrap(),
            Some(Signed {
                exp: 5,
                sig: "ab".into()
            })
        );
        for half in ["exp=5", "sig=ab"] {
            assert!(
                matches!(signed_query(Some(half)), Err(ApiError::Forbidden(_))),
                "{half}"
            );
        }
        for bad in [
            "exp=5&sig=ab&exp=6",
            "exp=-1&sig=ab",
            "exp=+1&sig=ab",
            "exp=&sig=ab",
            "exp=99999999999999999999999&sig=ab",
        ] {
            assert!(signed_query(Some(bad)).is_err(), "{bad}");
        }
        assert_eq!(ttl(None).unwrap(), 3600);
        assert_eq!(ttl(Some("60")).unwrap(), 60);
        for bad in ["0", "-1", "x", "604801", "+5"] {
            assert!(ttl(Some(bad)).is_err(), "{bad}");
        }
    }

    fn with(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn validators_and_ranges() {
        let tag = etag(7);
        assert_eq!(tag, "\"m7\"");
        assert!(not_modified(
            &with(&[(header::IF_NONE_MATCH, "\"m7\"")]),
            &tag
        ));
        assert!(not_modified(
            &with(&[(header::IF_NONE_MATCH, "\"x\", W/\"m7\"")]),
            &tag
        ));
        assert!(not_modified(&with(&[(header::IF_NONE_MATCH, "*")]), &tag));
        assert!(!not_modified(
            &with(&[(header::IF_NONE_MATCH, "\"m8\"")]),
            &tag
        ));
        assert!(!not_modified(&HeaderMap::new(), &tag));

        let r = |v: &str| range(&with(&[(header::RANGE, v)]), 100, &tag);
        assert_eq!(range(&HeaderMap::new(), 100, &tag), RangeAsk::Whole);
        assert_eq!(r("bytes=0-9"), RangeAsk::Part(0..=9));
        assert_eq!(r("bytes=90-"), RangeAsk::Part(90..=99));
        assert_eq!(r("bytes=-10"), RangeAsk::Part(90..=99));
        assert_eq!(r("bytes=95-200"), RangeAsk::Part(95..=99));
        assert_eq!(r("bytes=100-"), RangeAsk::Unsatisfiable);
        assert_eq!(r("bytes=200-300"), RangeAsk::Unsatisfiable);
        // Malformed or several ranges: the whole object (RFC 9110 §14.2 lets a server ignore).
        assert_eq!(r("bytes=0-1,5-6"), RangeAsk::Whole);
        assert_eq!(r("items=0-1"), RangeAsk::Whole);
        assert_eq!(r("bytes=9-1"), RangeAsk::Whole);
        // If-Range: the range only while the client's validator is current.
        let cond = |v: &str| {
            range(
                &with(&[(header::RANGE, "bytes=0-9"), (header::IF_RANGE, v)]),
                100,
                &tag,
            )
        };
        assert_eq!(cond("\"m7\""), RangeAsk::Part(0..=9));
        assert_eq!(cond("\"m8\""), RangeAsk::Whole);

        assert_eq!(
            cache_control(Some(1060), 1000),
            "public, max-age=60, immutable"
        );
        assert_eq!(
            cache_control(None, 1000),
            "private, max-age=86400, immutable"
        );
    }
}
