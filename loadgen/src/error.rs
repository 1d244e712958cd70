//! The library's errors: bad configuration, failed setup, files, and one failed request
//! ([`RequestError`], which a scenario counts by [`RequestError::kind`] instead of failing on).

use crate::acked::Outcome;
use std::path::PathBuf;

/// A failed run, setup or verification.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A flag's value does not parse or is out of range.
    #[error("invalid {what}: {detail}")]
    Config {
        /// Which setting.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A setup request (sign-up, login, follow graph, conversations) failed.
    #[error("setup failed at {step}: {source}")]
    Setup {
        /// What was being done.
        step: String,
        /// The request's failure.
        source: RequestError,
    },
    /// Reading or writing a file.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A JSON document (report, acked log) does not parse.
    #[error("{}: line {line}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The 1-based line (1 for a whole document).
        line: usize,
        /// The failure.
        source: serde_json::Error,
    },
    /// Histograms with different bounds were merged (a bug: every histogram has the same bounds).
    #[error("histogram merge: {0}")]
    Histogram(String),
    /// Drawing a plot failed.
    #[error("plot {}: {detail}", path.display())]
    Plot {
        /// The PNG file.
        path: PathBuf,
        /// The plotters error.
        detail: String,
    },
}

impl LoadError {
    /// A configuration error.
    pub fn config(what: &'static str, detail: impl Into<String>) -> Self {
        LoadError::Config {
            what,
            detail: detail.into(),
        }
    }

    /// A setup error at `step`.
    pub fn setup(step: impl Into<String>, source: RequestError) -> Self {
        LoadError::Setup {
            step: step.into(),
            source,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LoadError::Io {
            path: path.into(),
            source,
        }
    }
}

/// One request that did not succeed. Scenarios count these by [`RequestError::kind`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum RequestError {
    /// The server answered with a status the operation does not accept.
    #[error("HTTP {status}: {body}")]
    Status {
        /// The status code.
        status: u16,
        /// The start of the body (problem+json detail), for messages.
        body: String,
    },
    /// No complete answer within the timeout.
    #[error("timed out")]
    Timeout,
    /// The TCP connection could not be made.
    #[error("connect: {0}")]
    Connect(String),
    /// The connection failed after it was made.
    #[error("transport: {0}")]
    Transport(String),
    /// The answer was not the JSON the operation expects.
    #[error("unexpected answer: {0}")]
    Decode(String),
    /// The WebSocket was closed by the server with a code.
    #[error("websocket closed with {0}")]
    WsClose(u16),
    /// The generator dropped the request: too many were already in flight.
    #[error("dropped: in-flight limit reached")]
    Dropped,
}

impl RequestError {
    /// The label errors are counted under: `http_4xx`, `http_5xx`, `timeout`, `connect`,
    /// `transport`, `decode`, `ws_close_4008`, `dropped`.
    pub fn kind(&self) -> String {
        match self {
            RequestError::Status { status, .. } => format!("http_{}xx", status / 100),
            RequestError::Timeout => "timeout".into(),
            RequestError::Connect(_) => "connect".into(),
            RequestError::Transport(_) => "transport".into(),
            RequestError::Decode(_) => "decode".into(),
            RequestError::WsClose(code) => format!("ws_close_{code}"),
            RequestError::Dropped => "dropped".into(),
        }
    }

    /// For a write that failed this way, whether the server may still have applied it: `None`
    /// when it certainly did not (no connection, a 4xx, dropped here before it was sent).
    pub fn write_outcome(&self) -> Option<Outcome> {
        match self {
            RequestError::Status { status, .. } if *status < 500 => None,
            RequestError::Connect(_) | RequestError::Dropped => None,
            RequestError::Timeout => Some(Outcome::TimedOut),
            RequestError::Status { .. }
            | RequestError::Transport(_)
            | RequestError::Decode(_)
            | RequestError::WsClose(_) => Some(Outcome::Unknown),
        }
    }

    /// The server's status, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            RequestError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_group_statuses_by_class() {
        let e = |status| RequestError::Status {
            status,
            body: String::new(),
        };
        assert_eq!(e(404).kind(), "http_4xx");
        assert_eq!(e(503).kind(), "http_5xx");
        assert_eq!(RequestError::WsClose(4008).kind(), "ws_close_4008");
        assert_eq!(RequestError::Timeout.kind(), "timeout");
    }
}
