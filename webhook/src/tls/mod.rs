//! The serving certificate: loaded from PEM files, checked (the key matches, not expired), served
//! to each new handshake through a rustls resolver, and reloaded when the files' directory changes
//! (a Kubernetes Secret volume swaps its `..data` symlink; cert-manager rewrites the files). A bad
//! new pair is refused with a log line and the pair in use is kept. Connections already
//! established are never touched: rustls asks the resolver only during a handshake.
//!
//! Files and a `--tls-secret` Secret ([`crate::selfsigned`]) both hand their PEM bytes to one
//! [`PairLoader`], so that a pair is checked, logged, counted and swapped in one way.

mod load;
mod reload;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::metrics::Metrics;
use crate::readiness::Readiness;

pub use load::{PairLoader, PairOrigin};
pub use reload::Reloader;

/// Why a certificate/key pair cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM `CERTIFICATE` block.
    #[error("{path} holds no PEM certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The PEM in a file is malformed, or the key file holds no private key.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The leaf certificate cannot be parsed as X.509.
    #[error("{path}: the first certificate is not valid X.509: {message}")]
    X509 {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// The private key does not belong to the certificate, or rustls cannot use it.
    #[error("the key in {key} does not match the certificate in {cert}: {message}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' message.
        message: String,
    },
    /// The certificate has expired.
    #[error("the certificate in {path} expired at {not_after} (unix time)")]
    Expired {
        /// The file.
        path: PathBuf,
        /// Its `notAfter`, seconds since the epoch.
        not_after: i64,
    },
    /// The directory of a file cannot be watched.
    #[error("cannot watch {path} for certificate rotation: {message}")]
    Watch {
        /// The directory.
        path: PathBuf,
        /// notify's message.
        message: String,
    },
}

/// A checked pair, ready to serve.
#[derive(Debug, Clone)]
pub struct ServingCert {
    /// What rustls serves.
    pub key: Arc<CertifiedKey>,
    /// The leaf's `notAfter`, seconds since the epoch.
    pub not_after: i64,
    /// The PEM bytes read, to tell a real change from a touch.
    source: (Vec<u8>, Vec<u8>),
}

impl ServingCert {
    /// Whether it was made from these PEM bytes.
    pub fn is_from(&self, cert_pem: &[u8], key_pem: &[u8]) -> bool {
        self.source.0 == cert_pem && self.source.1 == key_pem
    }
}

/// The rustls crypto provider of the whole binary (ring: it builds without cmake).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Installs [`provider`] as the process default, for any rustls user that asks for one.
pub fn install_default_provider() {
    // Err only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads and checks a certificate chain and its key.
pub fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<ServingCert, TlsError> {
    let paths = PairPaths {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
    };
    check_pem(read_pair(&paths)?, (cert_path, key_path), provider)
}

/// The PEM bytes of the certificate file and the key file.
fn read_pair(paths: &PairPaths) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            path: path.to_owned(),
            source,
        })
    };
    Ok((read(&paths.cert)?, read(&paths.key)?))
}

/// Checks a PEM certificate chain and key held in memory; `labels` name them in errors (a file,
/// or a Secret's key).
pub fn check_pem(
    (cert_pem, key_pem): (Vec<u8>, Vec<u8>),
    (cert_path, key_path): (&Path, &Path),
    provider: &CryptoProvider,
) -> Result<ServingCert, TlsError> {
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: cert_path.to_owned(),
            message: e.to_string(),
        })?;
    let leaf = chain.first().ok_or_else(|| TlsError::NoCertificate {
        path: cert_path.to_owned(),
    })?;
    let not_after = not_after(leaf).map_err(|message| TlsError::X509 {
        path: cert_path.to_owned(),
        message,
    })?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| TlsError::Pem {
        path: key_path.to_owned(),
        message: format!("no usable private key: {e}"),
    })?;
    let mismatch = |message: String| TlsError::KeyMismatch {
        cert: cert_path.to_owned(),
        key: key_path.to_owned(),
        message,
    };
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| mismatch(e.to_string()))?;
    let certified = CertifiedKey::new(chain, signing_key);
    // Unlike `CertifiedKey::from_der`, an undecidable comparison is a refusal too.
    certified
        .keys_match()
        .map_err(|e| mismatch(e.to_string()))?;
    if not_after <= unix_now() {
        return Err(TlsError::Expired {
            path: cert_path.to_owned(),
            not_after,
        });
    }
    Ok(ServingCert {
        key: Arc::new(certified),
        not_after,
        source: (cert_pem, key_pem),
    })
}

fn not_after(leaf: &CertificateDer<'_>) -> Result<i64, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf).map_err(|e| e.to_string())?;
    Ok(cert.validity().not_after.timestamp())
}

/// Seconds since the epoch on this machine's clock (0 before 1970).
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Serves the current pair to every new handshake; empty until a valid pair was loaded (then
/// handshakes fail, and the server is not ready).
#[derive(Debug, Default)]
pub struct CertResolver {
    current: RwLock<Option<ServingCert>>,
}

impl CertResolver {
    /// Whether a certificate is loaded.
    pub fn is_loaded(&self) -> bool {
        self.read().is_some()
    }

    /// The pair in use.
    pub fn current(&self) -> Option<ServingCert> {
        self.read().clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<ServingCert>> {
        // A poisoned lock still holds a whole value: the writer only assigns.
        self.current.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Serves `cert` to every new handshake from now on.
    pub fn set(&self, cert: ServingCert) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(cert);
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.read().as_ref().map(|c| Arc::clone(&c.key))
    }
}

/// The rustls server configuration: TLS 1.3 and 1.2 only, the given resolver, ALPN h2 and
/// http/1.1.
pub fn server_config(resolver: Arc<CertResolver>) -> anyhow::Result<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The files of the serving pair.
#[derive(Debug, Clone)]
pub struct PairPaths {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// What a source of serving pairs feeds: the resolver handshakes read, the server's readiness,
/// and the metrics.
#[derive(Debug, Clone)]
pub struct Serving {
    /// Serves the pair loaded.
    pub resolver: Arc<CertResolver>,
    /// Not ready until a pair is loaded (and, with `--tls-secret`, while it is not trusted).
    pub readiness: Arc<Readiness>,
    /// `deputy_tls_*`.
    pub metrics: Arc<Metrics>,
}
