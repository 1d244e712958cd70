//! HTTPS and WSS: rustls over the accept loop, with the certificate chain and private key read
//! from PEM files (`--tls-cert`, `--tls-key`) and read again on SIGHUP.
//!
//! The server config is built once; its certificate comes from a resolver whose key can be
//! swapped, so a reload changes what new handshakes present while connections already open keep
//! theirs. A reload that fails (a missing file, a key that does not match, garbage) is logged
//! and changes nothing: the node goes on with the certificate it had. Only HTTP/1.1 is offered
//! (ALPN), what the accept loop serves, WebSocket upgrades included.

use rustls::crypto::aws_lc_rs;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio_rustls::TlsAcceptor;

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
    /// rustls refused the key or the configuration.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
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
}

fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, TlsError> {
    let bad = |path: &Path, what: String| TlsError::File {
        path: path.to_path_buf(),
        what,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad(key, e.to_string()))?;
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
        let current = Arc::new(Current(RwLock::new(load(cert, key)?)));
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
        })
    }

    /// Reads the files again; on success new handshakes present the new certificate, on
    /// failure nothing changes.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = load(&self.cert, &self.key)?;
        *self.current.0.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
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
