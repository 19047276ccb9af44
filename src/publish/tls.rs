//! TLS to the broker with rustls (ring provider): trust the system roots or a CA file, optional
//! client certificate for mutual TLS. The server's name is always verified against its
//! certificate. Built once, before the daemon runs, so a bad file is a clear start-up error.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::files::{self, FileError};

/// Errors building the TLS configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be opened or read, or is too large for a PEM file.
    #[error(transparent)]
    File(#[from] FileError),
    /// A PEM file holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Rustls(String),
    /// This build has no TLS.
    #[error("this build has no TLS support (build with the `tls` feature)")]
    Unsupported,
}

/// Files of a TLS set-up, resolved to absolute paths.
#[derive(Debug, Clone, Default)]
pub struct TlsFiles {
    /// CA certificates to trust (PEM); the system roots when `None`.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM).
    pub client_cert_file: Option<PathBuf>,
    /// Client private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub client_key_file: Option<PathBuf>,
}

impl TlsFiles {
    /// The files `config` names (`mqtt.tls`), resolved against the configuration's directory.
    #[must_use]
    pub fn from_config(config: &crate::config::Config) -> Self {
        let t = config.mqtt.tls.clone().unwrap_or_default();
        Self {
            ca_file: t.ca_file.map(|p| config.resolve(&p)),
            client_cert_file: t.client_cert_file.map(|p| config.resolve(&p)),
            client_key_file: t.client_key_file.map(|p| config.resolve(&p)),
        }
    }
}

/// A built client configuration (cheap to clone).
#[derive(Clone)]
pub struct TlsClient {
    #[cfg(feature = "tls")]
    pub(crate) config: Arc<rustls::ClientConfig>,
    #[cfg(not(feature = "tls"))]
    _never: std::convert::Infallible,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsClient")
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    Ok(files::read_bytes(
        path,
        files::MAX_TEXT_BYTES,
        "a PEM file",
    )?)
}

impl TlsError {
    /// The file the error is about, if it is about one.
    #[must_use]
    pub fn path(&self) -> Option<&Path> {
        match self {
            Self::File(e) => Some(e.path()),
            Self::Pem { path, .. } => Some(path),
            Self::Rustls(_) | Self::Unsupported => None,
        }
    }
}

impl TlsClient {
    /// Builds the rustls client configuration from `files`.
    ///
    /// # Errors
    /// [`TlsError`] naming the file that is missing or unusable.
    #[cfg(feature = "tls")]
    pub fn build(files: &TlsFiles) -> Result<Self, TlsError> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};

        let pem_error = |path: &Path, message: String| TlsError::Pem {
            path: path.to_path_buf(),
            message,
        };
        let certs = |path: &Path| -> Result<Vec<CertificateDer<'static>>, TlsError> {
            let data = read(path)?;
            let certs = rustls_pemfile::certs(&mut data.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_error(path, format!("bad PEM: {e}")))?;
            if certs.is_empty() {
                return Err(pem_error(path, "no certificate in the file".into()));
            }
            Ok(certs)
        };
        let mut roots = rustls::RootCertStore::empty();
        match &files.ca_file {
            Some(path) => {
                for c in certs(path)? {
                    roots
                        .add(c)
                        .map_err(|e| pem_error(path, format!("unusable CA certificate: {e}")))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                if let Some(first) = found.errors.first() {
                    tracing::warn!(
                        errors = found.errors.len(),
                        first = %first,
                        "some system CA certificates could not be loaded"
                    );
                }
                // A few odd system certificates may not parse; the rest are still useful.
                let (_, unusable) = roots.add_parsable_certificates(found.certs);
                if unusable > 0 {
                    tracing::warn!(unusable, "skipped system CA certificates that do not parse");
                }
                if roots.is_empty() {
                    return Err(TlsError::Rustls(
                        "no system CA certificates found; install ca-certificates or set mqtt.tls.ca_file".into(),
                    ));
                }
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match (&files.client_cert_file, &files.client_key_file) {
            (Some(cert), Some(key)) => {
                let chain = certs(cert)?;
                let data = read(key)?;
                let key_der: PrivateKeyDer<'static> =
                    rustls_pemfile::private_key(&mut data.as_slice())
                        .map_err(|e| pem_error(key, format!("bad PEM: {e}")))?
                        .ok_or_else(|| pem_error(key, "no private key in the file".into()))?;
                builder
                    .with_client_auth_cert(chain, key_der)
                    .map_err(|e| TlsError::Rustls(format!("client certificate: {e}")))?
            }
            _ => builder.with_no_client_auth(),
        };
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// Without the `tls` feature there is nothing to build.
    ///
    /// # Errors
    /// Always [`TlsError::Unsupported`].
    #[cfg(not(feature = "tls"))]
    pub fn build(_files: &TlsFiles) -> Result<Self, TlsError> {
        Err(TlsError::Unsupported)
    }

    /// The rumqttc transport.
    #[must_use]
    pub fn transport(&self) -> rumqttc::Transport {
        #[cfg(feature = "tls")]
        {
            rumqttc::Transport::Tls(rumqttc::TlsConfiguration::Rustls(Arc::clone(&self.config)))
        }
        #[cfg(not(feature = "tls"))]
        match self._never {}
    }
}
