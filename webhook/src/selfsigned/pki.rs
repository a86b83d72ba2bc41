//! The certificates of `--tls-secret`: minting a CA and a serving certificate (rcgen, ECDSA
//! P-256), and reading back what a Secret holds. Every time is passed in (seconds since the
//! epoch), so that the rotation schedule can be tested without waiting for it.

use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// How far `notBefore` predates the moment of issue, so that a node whose clock lags a little
/// still accepts a certificate minted a moment ago. The issue time is read back as
/// `notBefore + BACKDATE`; changing it would shift every schedule read from an existing Secret.
pub const BACKDATE_SECS: i64 = 300;

/// Why minting failed.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// rcgen refused the parameters (not expected with ours).
    #[error("cannot mint the {what}: {source}")]
    Rcgen {
        /// The CA or the serving certificate.
        what: &'static str,
        /// rcgen's error.
        source: rcgen::Error,
    },
    /// The certificate minted does not verify for the name the API server dials.
    #[error(
        "a certificate minted for {name} does not verify for it (is the service name a DNS label?)"
    )]
    Unverifiable {
        /// The name.
        name: String,
    },
}

impl MintError {
    /// The certificate minted does not verify for `name`.
    pub fn unverifiable(name: &str) -> Self {
        Self::Unverifiable {
            name: name.to_owned(),
        }
    }
}

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemPair {
    /// The certificate.
    pub cert: String,
    /// Its PKCS#8 key.
    pub key: String,
}

/// One CA certificate of the trust bundle.
#[derive(Debug, Clone)]
pub struct CaCert {
    /// Its PEM block.
    pub pem: String,
    /// Its DER, as the `caBundle` is compared.
    pub der: CertificateDer<'static>,
    /// When it was minted (`notBefore + BACKDATE_SECS`).
    pub issued_at: i64,
    /// Its `notAfter`.
    pub not_after: i64,
    spki: Vec<u8>,
}

/// Validity of a certificate, read from its DER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Validity {
    /// `notBefore + BACKDATE_SECS`.
    pub issued_at: i64,
    /// `notAfter`.
    pub not_after: i64,
}

impl Validity {
    /// When a third of its life is left: the moment to renew it.
    pub fn renew_at(&self) -> i64 {
        self.not_after - (self.not_after - self.issued_at) / 3
    }
}

/// Reads a certificate's validity.
pub fn validity(der: &CertificateDer<'_>) -> Option<Validity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let v = cert.validity();
    Some(Validity {
        issued_at: v.not_before.timestamp() + BACKDATE_SECS,
        not_after: v.not_after.timestamp(),
    })
}

/// Reads the validity of the first certificate of a PEM text.
pub fn pem_validity(pem: &str) -> Option<Validity> {
    validity(&CertificateDer::from_pem_slice(pem.as_bytes()).ok()?)
}

/// Parses a PEM bundle of CA certificates; blocks that are not parseable certificates are
/// dropped (the caller sees fewer CAs, and repairs the bundle).
pub fn parse_bundle(pem: &str) -> Vec<CaCert> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .filter_map(|der| {
            let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
            let v = cert.validity();
            let spki = cert.public_key().raw.to_vec();
            let pem = pem_of(&der);
            Some(CaCert {
                pem,
                issued_at: v.not_before.timestamp() + BACKDATE_SECS,
                not_after: v.not_after.timestamp(),
                spki,
                der: der.into_owned(),
            })
        })
        .collect()
}

/// Joins CA certificates into one PEM bundle, in order.
pub fn bundle_pem(cas: &[CaCert]) -> String {
    cas.iter().map(|c| c.pem.as_str()).collect()
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Whether `key_pem` is the private key of `ca`.
pub fn key_matches(ca: &CaCert, key_pem: &str) -> bool {
    KeyPair::from_pem(key_pem).is_ok_and(|key| key.subject_public_key_info() == ca.spki)
}

/// Whether the serving pair's key is the certificate's own.
pub fn leaf_key_matches(leaf: &PemPair) -> bool {
    let Ok(der) = CertificateDer::from_pem_slice(leaf.cert.as_bytes()) else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return false;
    };
    KeyPair::from_pem(&leaf.key)
        .is_ok_and(|key| key.subject_public_key_info() == cert.public_key().raw)
}

/// Mints a self-signed CA valid from now for `validity`.
pub fn mint_ca(now: i64, validity: Duration) -> Result<PemPair, MintError> {
    let mint = |source| MintError::Rcgen { what: "CA", source };
    let key = KeyPair::generate().map_err(mint)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    // The time in the name tells CAs apart in a bundle and in logs.
    params
        .distinguished_name
        .push(DnType::CommonName, format!("k8s-deputy webhook CA {now}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, now, now.saturating_add(secs(validity)));
    let cert = params.self_signed(&key).map_err(mint)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// Mints a serving certificate for `dns_names`, signed by the CA, valid from now for `validity`
/// but never past the CA's own `notAfter`.
pub fn mint_leaf(
    ca: &CaCert,
    ca_key_pem: &str,
    dns_names: &[String],
    now: i64,
    validity: Duration,
) -> Result<PemPair, MintError> {
    let mint = |source| MintError::Rcgen {
        what: "serving certificate",
        source,
    };
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(mint)?;
    let issuer = Issuer::from_ca_cert_der(&ca.der, ca_key).map_err(mint)?;
    let key = KeyPair::generate().map_err(mint)?;
    let mut params = CertificateParams::new(dns_names.to_vec()).map_err(mint)?;
    params.distinguished_name = DistinguishedName::new();
    if let Some(first) = dns_names.first() {
        params
            .distinguished_name
            .push(DnType::CommonName, first.clone());
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let not_after = now.saturating_add(secs(validity)).min(ca.not_after);
    set_validity(&mut params, now, not_after);
    let cert = params.signed_by(&key, &issuer).map_err(mint)?;
    Ok(PemPair {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

fn set_validity(params: &mut CertificateParams, issued_at: i64, not_after: i64) {
    let at = |t: i64| {
        time::OffsetDateTime::from_unix_timestamp(t).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
    };
    params.not_before = at(issued_at - BACKDATE_SECS);
    params.not_after = at(not_after);
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// Which CA of `cas` the API server would accept `leaf_pem` under when it dials `server_name`
/// at `now` (chain, validity, name): the index of the first that does.
pub fn verified_by(
    cas: &[CaCert],
    leaf_pem: &str,
    server_name: &str,
    now: i64,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Option<usize> {
    let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes()).ok()?;
    verified_der_by(cas, &leaf, server_name, now, provider)
}

/// [`verified_by`] for a DER certificate.
pub fn verified_der_by(
    cas: &[CaCert],
    leaf: &CertificateDer<'_>,
    server_name: &str,
    now: i64,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Option<usize> {
    let name = ServerName::try_from(server_name.to_owned()).ok()?;
    let at = UnixTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).ok()?));
    cas.iter().position(|ca| {
        let mut roots = RootCertStore::empty();
        if roots.add(ca.der.clone()).is_err() {
            return false;
        }
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider))
            .build()
            .is_ok_and(|verifier| {
                verifier
                    .verify_server_cert(leaf, &[], &name, &[], at)
                    .is_ok()
            })
    })
}
