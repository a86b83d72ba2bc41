//! The one way a new pair gets served, whether it was read from files or from a Secret: skip the
//! pair in use and the last one refused, check a new one, swap it in or keep the old one, and
//! say so once in a log line and the metrics.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;

use super::{check_pem, provider, PairPaths, Serving, ServingCert, TlsError};
use crate::readiness::NotReady;

/// Where the pairs come from, to name them in errors and log lines.
#[derive(Debug, Clone)]
pub enum PairOrigin {
    /// PEM files (a mounted Secret, cert-manager).
    Files(PairPaths),
    /// The `tls.crt` and `tls.key` of a Secret read through the API (`--tls-secret`).
    Secret {
        /// The Secret's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
    },
}

impl PairOrigin {
    /// How errors name the certificate and the key: a file, or a Secret's key.
    fn labels(&self) -> (PathBuf, PathBuf) {
        match self {
            Self::Files(paths) => (paths.cert.clone(), paths.key.clone()),
            Self::Secret { namespace, name } => {
                let label = |key: &str| PathBuf::from(format!("secret {namespace}/{name}: {key}"));
                (label("tls.crt"), label("tls.key"))
            }
        }
    }
}

/// Offers pairs to the resolver. It remembers the last refused content, so that a bad pair left
/// in place is refused, logged and counted once, not at every re-check.
#[derive(Debug)]
pub struct PairLoader {
    origin: PairOrigin,
    labels: (PathBuf, PathBuf),
    serving: Serving,
    provider: Arc<CryptoProvider>,
    last_refused: Option<(Vec<u8>, Vec<u8>)>,
}

impl PairLoader {
    /// A loader that feeds `serving` with pairs from `origin`.
    pub fn new(origin: PairOrigin, serving: Serving) -> Self {
        Self {
            labels: origin.labels(),
            origin,
            serving,
            provider: provider(),
            last_refused: None,
        }
    }

    /// Serves the PEM certificate chain and key if they are new and valid; a bad pair is logged
    /// and counted, and the pair in use is kept.
    pub fn offer(&mut self, source: (Vec<u8>, Vec<u8>)) {
        let current = self.serving.resolver.current();
        let known = current.as_ref().is_some_and(|c| c.source == source)
            || self.last_refused.as_ref() == Some(&source);
        if known {
            return;
        }
        let labels = (self.labels.0.as_path(), self.labels.1.as_path());
        match check_pem(source.clone(), labels, &self.provider) {
            Ok(cert) => self.serve(cert, current.is_none()),
            Err(err) => {
                self.refused(&err, current.is_some());
                self.last_refused = Some(source);
            }
        }
    }

    /// A pair that could not even be read: logged and counted at every try (the next one may
    /// read a whole pair).
    pub fn unreadable(&self, err: &TlsError) {
        self.refused(err, self.serving.resolver.is_loaded());
    }

    fn serve(&mut self, cert: ServingCert, first: bool) {
        let not_after = cert.not_after;
        match &self.origin {
            PairOrigin::Files(paths) => tracing::info!(
                cert = %paths.cert.display(),
                not_after,
                first,
                "serving certificate loaded"
            ),
            PairOrigin::Secret { name, .. } => tracing::info!(
                secret = %name,
                not_after,
                first,
                "serving certificate loaded"
            ),
        }
        self.serving.metrics.tls_loaded(not_after);
        self.serving.resolver.set(cert);
        self.serving.readiness.set(NotReady::NoCertificate, false);
        self.last_refused = None;
    }

    fn refused(&self, err: &TlsError, keeping_previous: bool) {
        match &self.origin {
            PairOrigin::Files(_) => tracing::error!(
                error = %err,
                keeping_previous,
                "new serving certificate refused"
            ),
            PairOrigin::Secret { .. } => tracing::error!(
                error = %err,
                keeping_previous,
                "TLS Secret's serving pair refused"
            ),
        }
        self.serving.metrics.tls_refused();
    }
}
