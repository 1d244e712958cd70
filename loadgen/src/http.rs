//! A pooled HTTP/1.1 client (hyper 1 + hyper-util, no TLS): one per run, cheap to clone,
//! connections reused across requests to the same target, and every request bounded by a timeout
//! that covers the answer's body too.

use crate::error::RequestError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

/// The HTTP client of a run.
#[derive(Clone, Debug)]
pub struct Http {
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

/// A response: status and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The whole body.
    pub body: Bytes,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, RequestError> {
        serde_json::from_slice(&self.body).map_err(|e| RequestError::Decode(e.to_string()))
    }
}

impl Http {
    /// A client whose requests time out after `timeout`, keeping up to `idle_per_host` idle
    /// connections per target.
    pub fn new(timeout: Duration, idle_per_host: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(idle_per_host)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Http { client, timeout }
    }

    /// Sends one request and reads the whole answer, whatever its status.
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        json: Option<Vec<u8>>,
    ) -> Result<Answer, RequestError> {
        let mut req = Request::builder().method(method).uri(url);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if json.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(json.unwrap_or_default())))
            .map_err(|e| RequestError::Decode(format!("bad request {url}: {e}")))?;
        let call = async {
            let resp = self.client.request(req).await.map_err(|e| {
                if e.is_connect() {
                    RequestError::Connect(e.to_string())
                } else {
                    RequestError::Transport(e.to_string())
                }
            })?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| RequestError::Transport(e.to_string()))?
                .to_bytes();
            Ok(Answer { status, body })
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| RequestError::Timeout)?
    }

    /// Sends one request and accepts only the statuses in `ok`; any other is an error.
    pub async fn expect(
        &self,
        method: Method,
        url: &str,
        token: Option<&str>,
        json: Option<Vec<u8>>,
        ok: &[u16],
    ) -> Result<Answer, RequestError> {
        let a = self.send(method, url, token, json).await?;
        if ok.contains(&a.status) {
            Ok(a)
        } else {
            let body = String::from_utf8_lossy(&a.body[..a.body.len().min(200)]).into_owned();
            Err(RequestError::Status {
                status: a.status,
                body,
            })
        }
    }
}
