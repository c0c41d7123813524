//! Optional HTTPS for the console (rustls with the ring provider): set `tls.cert_file` and
//! `tls.key_file` (PEM: the certificate chain, then a PKCS#8, PKCS#1 or SEC1 private key).
//! Without them the console serves plain HTTP, on loopback by default.
//!
//! [`TlsListener`] is an `axum::serve::Listener`: a task accepts TCP connections and runs
//! each TLS handshake in its own task (at most [`HANDSHAKE_TIMEOUT`]), so a slow or broken
//! client neither blocks the others nor stops the server; finished handshakes are handed to
//! axum.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::{net::TcpListener, sync::mpsc};
use tokio_rustls::{server::TlsStream, TlsAcceptor};

/// Longest a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain (server certificate first); empty: plain HTTP.
    pub cert_file: PathBuf,
    /// PEM private key of that certificate.
    pub key_file: PathBuf,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty()
    }

    /// Both files or neither; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match (
            self.cert_file.as_os_str().is_empty(),
            self.key_file.as_os_str().is_empty(),
        ) {
            (true, true) | (false, false) => Ok(()),
            (false, true) => Err((
                "tls.key_file",
                "tls.cert_file is set: set the key too".into(),
            )),
            (true, false) => Err((
                "tls.cert_file",
                "tls.key_file is set: set the certificate too".into(),
            )),
        }
    }
}

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("tls.cert_file {path}: {problem}")]
    Certificate { path: String, problem: String },
    #[error("tls.key_file {path}: {problem}")]
    Key { path: String, problem: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Reads the certificate chain and key (errors name the setting and file).
pub fn server_config(config: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let cert_path = config.cert_file.display().to_string();
    let certs = CertificateDer::pem_file_iter(&config.cert_file)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificate {
            path: cert_path.clone(),
            problem: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Certificate {
            path: cert_path,
            problem: "no PEM certificate in the file".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(&config.key_file).map_err(|e| TlsError::Key {
        path: config.key_file.display().to_string(),
        problem: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(server))
}

/// A TCP listener whose connections are TLS sessions, handshaken off the accept path.
#[derive(Debug)]
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<tokio::net::TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// Starts accepting on `listener` with `config`.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, then go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { local, ready })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task ends only when this listener is gone.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_files_or_neither() {
        assert!(TlsConfig::default().validate().is_ok());
        let half = TlsConfig {
            cert_file: "c.pem".into(),
            key_file: PathBuf::new(),
        };
        assert_eq!(half.validate().unwrap_err().0, "tls.key_file");
    }

    #[test]
    fn unreadable_files_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsConfig {
            cert_file: dir.path().join("nope.pem"),
            key_file: dir.path().join("nope.key"),
        };
        let e = server_config(&missing).unwrap_err().to_string();
        assert!(e.starts_with("tls.cert_file"), "{e}");
        std::fs::write(dir.path().join("empty.pem"), "not pem\n").unwrap();
        let empty = TlsConfig {
            cert_file: dir.path().join("empty.pem"),
            key_file: dir.path().join("nope.key"),
        };
        let e = server_config(&empty).unwrap_err().to_string();
        assert!(e.contains("no PEM certificate"), "{e}");
    }
}
