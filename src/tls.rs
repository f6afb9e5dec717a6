//! Optional TLS on the ingress: rustls (ring provider) with a certificate
//! chain and key from PEM files, swapped on SIGHUP so a renewed certificate
//! needs no restart (see [`crate::reload`]). A reload that fails keeps the
//! certificate in force.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::reload::Reloadable;

/// The server configuration new connections are handshaken with.
pub type LiveTls = Arc<ArcSwap<ServerConfig>>;

/// `TLS_CERT_FILE` and `TLS_KEY_FILE`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// Why a certificate or key could not be used; names the setting.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no certificate.
    #[error("KOBRA_RELAY_TLS_CERT_FILE={path}: no PEM certificate could be read ({reason})")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The key file is unreadable or holds no private key.
    #[error("KOBRA_RELAY_TLS_KEY_FILE={path}: no PEM private key could be read ({reason})")]
    Key {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the pair (for instance, a key that does not match).
    #[error("KOBRA_RELAY_TLS_CERT_FILE/KOBRA_RELAY_TLS_KEY_FILE: {0}")]
    Rejected(#[source] rustls::Error),
}

fn certificate_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Certificate {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

/// Builds the server configuration from the PEM files.
///
/// # Errors
/// See [`TlsError`].
pub fn load(files: &TlsFiles) -> Result<ServerConfig, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|e| certificate_error(&files.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| certificate_error(&files.cert, e))?;
    if certs.is_empty() {
        return Err(certificate_error(
            &files.cert,
            "the file holds no CERTIFICATE block",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| TlsError::Key {
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Rejected)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsError::Rejected)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The live server configuration and its files, for
/// [`crate::reload::watch`]: reloaded on SIGHUP only (a certificate and its
/// key are renewed together, so a change of one file alone means little).
pub struct TlsReloader {
    /// `TLS_CERT_FILE` and `TLS_KEY_FILE`.
    pub files: TlsFiles,
    /// The configuration new connections are handshaken with.
    pub live: LiveTls,
}

impl Reloadable for TlsReloader {
    fn reload(&self, _reason: &str) {
        match load(&self.files) {
            Ok(config) => {
                self.live.store(Arc::new(config));
                tracing::info!(cert = %self.files.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "TLS certificate not reloaded; the previous one stays in force");
            }
        }
    }
}
