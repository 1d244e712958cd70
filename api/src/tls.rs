//! HTTPS and WSS: rustls over the accept loop, with the certificate chain and private key read
//! from PEM files (`--tls-cert`, `--tls-key`) and read again on SIGHUP or when they change.
//!
//! The server config is built once; its certificate comes from a resolver whose key can be
//! swapped, so a reload changes what new handshakes present while connections already open keep
//! theirs. A reload that fails (a missing file, a key that does not match, garbage) is logged,
//! counted (`starling_tls_reloads_total{result="failed"}`) and changes nothing: the node goes on
//! with the certificate it had. Only HTTP/1.1 is offered (ALPN), what the accept loop serves,
//! WebSocket upgrades included.
//!
//! **Change detection is a poll**, every `--tls-watch-interval` (5 s): both files are read
//! (capped at [`MAX_PEM`]) and their contents hashed; a hash other than the last one tried is
//! loaded. Not `notify`/inotify: Kubernetes mounts a Secret as symlinks into a `..data`
//! directory that the kubelet swaps atomically, so a watch on the files never fires and a watch
//! on the directory sees a burst of events in several steps; cert-manager, certbot and an
//! operator's `cp` write the two files one after the other. A poll of the content sees every one
//! of these the same way, costs two small reads per interval, and retries an intermediate bad
//! pair (new certificate, old key) as soon as the second file lands, since the hash changes
//! again. The same pair is not retried until it changes (one log line and one count per bad
//! pair, not one per interval).

use rustls::crypto::aws_lc_rs;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio_rustls::TlsAcceptor;

/// The largest certificate or key file read, in bytes (a chain of a few certificates is a few
/// KiB; a larger file is refused, not read whole).
pub const MAX_PEM: u64 = 1 << 20;

/// Reloads of the certificate since start, this process: (applied, failed). Served at
/// `/metrics` as `starling_tls_reloads_total{result}` ([`crate::telemetry`]).
pub(crate) static RELOADS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {what}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A PEM file could not be read (missing, unreadable, too large).
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A certificate without its key, or a key without its certificate.
    #[error("--tls-cert and --tls-key go together")]
    Unpaired,
    /// rustls refused the key or the configuration.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

/// HTTPS: a group of `starling serve`'s settings (flags, `STARLING_<FLAG>` and `--config` keys,
/// each declared once here), flattened into [`crate::config::ServeArgs`]. [`checked`](Self::checked)
/// refuses a certificate without its key (or the reverse); [`files`](Self::files) is then the pair
/// or nothing.
#[derive(clap::Args, serde::Serialize, serde::Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(default)]
pub struct TlsSettings {
    /// PEM certificate chain: serve HTTPS and WSS instead of HTTP (with `--tls-key`); both
    /// files are read again on SIGHUP and when their content changes.
    #[arg(long, env = "STARLING_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `--tls-cert`.
    #[arg(long, env = "STARLING_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// How often the TLS files are checked for a change, e.g. `5s` (default 5s, 100ms-1h).
    #[arg(
        long,
        env = "STARLING_TLS_WATCH_INTERVAL",
        default_value = "5s",
        hide_default_value = true
    )]
    pub tls_watch_interval: crate::config::values::Timeout,
}

impl Default for TlsSettings {
    fn default() -> Self {
        crate::config::defaults()
    }
}

impl TlsSettings {
    /// The settings, once a certificate and its key are both given or neither is.
    pub fn checked(self) -> Result<Self, TlsError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) | (None, Some(_)) => Err(TlsError::Unpaired),
            _ => Ok(self),
        }
    }

    /// The certificate chain and key files when HTTPS is on (both given).
    pub fn files(&self) -> Option<(&Path, &Path)> {
        Some((self.tls_cert.as_deref()?, self.tls_key.as_deref()?))
    }

    /// How often the files are checked for a change.
    pub fn watch_interval(&self) -> Duration {
        self.tls_watch_interval.get()
    }
}

/// The certificate the next handshake presents, swappable.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // A poisoned lock only means a panic while swapping an Arc: the value is whole.
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// The node's TLS: an acceptor and the files it reloads from. Cheap to clone.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    current: Arc<Current>,
    cert: PathBuf,
    key: PathBuf,
    /// The hash of the pair last tried (loaded or refused).
    tried: Arc<Mutex<u64>>,
}

/// Both files' contents, read once (so the pair hashed is the pair parsed).
struct Pair {
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl Pair {
    fn read(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let read = |path: &Path| -> Result<Vec<u8>, TlsError> {
            let bad = |source| TlsError::Read {
                path: path.to_path_buf(),
                source,
            };
            let mut out = Vec::new();
            std::fs::File::open(path)
                .and_then(|f| f.take(MAX_PEM + 1).read_to_end(&mut out))
                .map_err(bad)?;
            if out.len() as u64 > MAX_PEM {
                return Err(bad(std::io::Error::other(format!(
                    "larger than {MAX_PEM} bytes"
                ))));
            }
            Ok(out)
        };
        Ok(Pair {
            cert: read(cert)?,
            key: read(key)?,
        })
    }

    fn hash(&self) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.cert.hash(&mut h);
        self.key.hash(&mut h);
        h.finish()
    }
}

fn load(cert: &Path, key: &Path) -> Result<(Arc<CertifiedKey>, u64), TlsError> {
    let pair = Pair::read(cert, key)?;
    Ok((parse(&pair, cert, key)?, pair.hash()))
}

fn parse(pair: &Pair, cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let bad = |path: &Path, what: String| TlsError::File {
        path: path.to_path_buf(),
        what,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pair.cert)
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_slice(&pair.key).map_err(|e| bad(key, e.to_string()))?;
    let signing = aws_lc_rs::sign::any_supported_type(&key_der)?;
    let ck = CertifiedKey::new(chain, signing);
    // The key must be the certificate's: refuse a mismatched pair at load, not at handshake.
    ck.keys_match()?;
    Ok(Arc::new(ck))
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the certificate chain and key and builds the acceptor.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let (first, tried) = load(cert, key)?;
        let current = Arc::new(Current(RwLock::new(first)));
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
                .with_safe_default_protocol_versions()?
                .with_no_client_auth()
                .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            current,
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            tried: Arc::new(Mutex::new(tried)),
        })
    }

    /// Reads the files again; on success new handshakes present the new certificate, on
    /// failure nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let out = self.reload_if(|_| true).map(|_| ());
        if matches!(out, Err(TlsError::Read { .. })) {
            RELOADS[1].fetch_add(1, Ordering::Relaxed);
        }
        out
    }

    /// Reads the files; when `wanted(hash of the pair)`, loads them (success: new handshakes
    /// present the new certificate; failure: nothing changes) and remembers the hash as tried.
    /// `Ok(true)`: a new certificate is in place. Counts every load in [`RELOADS`] (files that
    /// cannot be read are the caller's to count).
    fn reload_if(&self, wanted: impl FnOnce(u64) -> bool) -> Result<bool, TlsError> {
        let pair = Pair::read(&self.cert, &self.key)?;
        let hash = pair.hash();
        if !wanted(hash) {
            return Ok(false);
        }
        *self.tried.lock().unwrap_or_else(|e| e.into_inner()) = hash;
        match parse(&pair, &self.cert, &self.key) {
            Ok(fresh) => {
                *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = fresh;
                RELOADS[0].fetch_add(1, Ordering::Relaxed);
                Ok(true)
            }
            Err(e) => {
                RELOADS[1].fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    /// One poll: loads the files if their contents differ from the pair last tried.
    fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let tried = *self.tried.lock().unwrap_or_else(|e| e.into_inner());
        self.reload_if(|hash| hash != tried)
    }

    /// Polls the files every `every` and loads them when they change (see the module
    /// documentation), until `stop` turns true. Files that cannot be read (being replaced, or
    /// gone) are logged and counted once until they can be read again.
    pub async fn reload_on_change(
        self,
        every: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut unreadable = false;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            // Two small file reads and maybe a parse: off the async workers.
            let polled = tokio::task::spawn_blocking(move || this.reload_if_changed()).await;
            match polled {
                Ok(Ok(true)) => {
                    unreadable = false;
                    tracing::info!(cert = %self.cert.display(), "TLS files changed; certificate reloaded");
                }
                Ok(Ok(false)) => unreadable = false,
                Ok(Err(e @ TlsError::Read { .. })) => {
                    if !unreadable {
                        unreadable = true;
                        RELOADS[1].fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e, "TLS files cannot be read; keeping the current certificate");
                    }
                }
                Ok(Err(e)) => {
                    unreadable = false;
                    tracing::error!(error = %e, "TLS files changed but do not load; keeping the current certificate");
                }
                Err(e) => tracing::error!(error = %e, "TLS file poll panicked"),
            }
        }
    }

    /// The acceptor of the accept loop.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// Reloads on every SIGHUP until `stop` turns true.
    pub async fn reload_on_sighup(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hup = match signal(SignalKind::hangup()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGHUP; TLS files will not be reloaded");
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    got = hup.recv() => {
                        if got.is_none() {
                            return;
                        }
                        match self.reload() {
                            Ok(()) => tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded"),
                            Err(e) => tracing::error!(error = %e, "TLS reload failed; keeping the current certificate"),
                        }
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = stop.changed().await;
        }
    }
}
