//! The webhook's TLS as the tests see it: its Secret (`--tls-secret`) and the configuration's
//! caBundles, each replica's certificate metrics, X.509 certificates read with `x509-parser` (and
//! made with `rcgen`, for test servers), and a TLS probe that makes a new handshake (rustls) and
//! returns the certificate it was served.
//!
//! The probe speaks TLS in this process over the standard input and output of a relay command,
//! so that the TCP connection can start in another network namespace: the node's, where Pod IPs
//! are reachable (`deputy-e2e-tool relay` under `nsenter --net`).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;

use crate::deputy::{METRICS_PORT, SYSTEM_NS, WEBHOOK_NAME};
use crate::{metrics, Node, NODE_NETNS};

/// The Secret the webhook makes, rotates and serves its certificate from (`--tls-secret`).
pub const TLS_SECRET: &str = "deputy-webhook-tls";

/// The webhook's TLS Secret, as the tests read it.
#[derive(Debug)]
pub struct TlsSecret {
    /// `ca.crt`, newest first.
    pub cas: Vec<String>,
    /// `tls.crt`.
    pub leaf: String,
    /// The `k8s-deputy.io/rotated` annotation: the last rotation request handled.
    pub rotated: Option<String>,
}

/// Reads the webhook's TLS Secret from `secrets` (the API of [`SYSTEM_NS`]).
pub async fn tls_secret(secrets: &Api<Secret>) -> TlsSecret {
    let secret = secrets
        .get(TLS_SECRET)
        .await
        .expect("the Secret deputy-system/deputy-webhook-tls (manifests/overlays/self-signed)");
    let field = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .map(|v| String::from_utf8_lossy(&v.0).into_owned())
            .unwrap_or_default()
    };
    TlsSecret {
        cas: split_pem(&field("ca.crt")),
        leaf: field("tls.crt"),
        rotated: secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("k8s-deputy.io/rotated"))
            .cloned(),
    }
}

/// Sets one annotation on the webhook's TLS Secret.
pub async fn annotate_tls_secret(secrets: &Api<Secret>, key: &str, value: &str) {
    secrets
        .patch(
            TLS_SECRET,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {key: value}}})),
        )
        .await
        .unwrap_or_else(|e| panic!("annotate the Secret with {key}={value}: {e}"));
}

/// The PEM blocks of a bundle, each ending with its newline.
pub fn split_pem(bundle: &str) -> Vec<String> {
    bundle
        .split_inclusive("-----END CERTIFICATE-----\n")
        .filter(|b| b.contains("BEGIN CERTIFICATE"))
        .map(str::to_owned)
        .collect()
}

/// The CA bundles of the webhook configuration's entries, split into PEM blocks.
pub async fn configured_cas(node: &Node) -> Vec<Vec<String>> {
    let configurations: Api<MutatingWebhookConfiguration> = Api::all(node.client.clone());
    let configuration = configurations
        .get(WEBHOOK_NAME)
        .await
        .expect("get the configuration");
    configuration
        .webhooks
        .unwrap_or_default()
        .iter()
        .map(|w| {
            let bundle = w
                .client_config
                .ca_bundle
                .as_ref()
                .map(|b| b.0.clone())
                .unwrap_or_default();
            split_pem(&String::from_utf8_lossy(&bundle))
        })
        .collect()
}

/// One webhook Pod's serving-certificate metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TlsState {
    /// `deputy_tls_certificate_not_after_seconds`: the served certificate's `notAfter`.
    pub not_after: f64,
    /// `deputy_tls_reloads_total{result="loaded"}`.
    pub loaded: f64,
    /// `deputy_tls_reloads_total{result="refused"}`.
    pub refused: f64,
    /// `deputy_tls_secret_writes_total`, all reasons.
    pub writes: f64,
}

/// The serving-certificate metrics of webhook Pod `pod`.
pub async fn tls_state(node: &Node, pod: &str) -> Result<TlsState> {
    let samples = metrics::pod(node, SYSTEM_NS, pod, METRICS_PORT).await?;
    Ok(TlsState {
        not_after: metrics::sum(&samples, "deputy_tls_certificate_not_after_seconds", &[]),
        loaded: metrics::sum(
            &samples,
            "deputy_tls_reloads_total",
            &[("result", "loaded")],
        ),
        refused: metrics::sum(
            &samples,
            "deputy_tls_reloads_total",
            &[("result", "refused")],
        ),
        writes: metrics::sum(&samples, "deputy_tls_secret_writes_total", &[]),
    })
}

/// An X.509 certificate (DER), read with `x509-parser`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate(pub Vec<u8>);

impl Certificate {
    /// The first certificate of a PEM text.
    pub fn from_pem(pem: &[u8]) -> Certificate {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem).expect("a PEM certificate");
        Certificate(block.contents)
    }

    fn read<T>(&self, f: impl FnOnce(&x509_parser::certificate::X509Certificate) -> T) -> T {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.0).expect("an X.509 certificate");
        f(&cert)
    }

    /// The serial number, as hex bytes separated by colons.
    pub fn serial(&self) -> String {
        self.read(|c| c.raw_serial_as_string())
    }

    /// `notAfter`, seconds since the epoch (as the webhook's
    /// `deputy_tls_certificate_not_after_seconds` gauge reports the one it serves).
    pub fn not_after(&self) -> f64 {
        self.read(|c| c.validity().not_after.timestamp() as f64)
    }

    /// The DNS names of its subjectAltName.
    pub fn dns_names(&self) -> Vec<String> {
        self.read(|c| {
            let san = c
                .subject_alternative_name()
                .expect("a well-formed subjectAltName")
                .expect("a subjectAltName");
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                    _ => None,
                })
                .collect()
        })
    }
}

/// A CA and a serving certificate it signed, made for a test server (PEM).
#[derive(Debug, Clone)]
pub struct Issued {
    /// The CA's certificate, for a `caBundle` or a client's roots.
    pub ca: String,
    /// The serving certificate.
    pub cert: String,
    /// The serving certificate's private key (PKCS#8).
    pub key: String,
}

/// Makes a CA named `deputy-e2e <ca_name> CA` and a certificate it signs for `dns_name`.
pub fn issue(ca_name: &str, dns_name: &str) -> Issued {
    let ca_key = rcgen::KeyPair::generate().expect("a CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("deputy-e2e {ca_name} CA"),
    );
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("a self-signed CA");
    let key = rcgen::KeyPair::generate().expect("a key");
    let cert = rcgen::CertificateParams::new(vec![dns_name.to_owned()])
        .expect("certificate params")
        .signed_by(&key, &ca)
        .expect("a certificate signed by the CA");
    Issued {
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

/// `deputy-e2e-tool relay ADDR` (the binary at `tool`) inside the node's network namespace
/// ([`NODE_NETNS`]), where Pod IPs are reachable: a relay for [`served_certificate`].
pub fn relay_in_node(tool: &Path, addr: &str) -> Command {
    let mut relay = Command::new("nsenter");
    relay
        .arg(format!("--net={NODE_NETNS}"))
        .arg("--")
        .arg(tool)
        .args(["relay", addr]);
    relay
}

/// A TLS client (TLS 1.2 and 1.3, ring) that trusts `roots` alone and sends no certificate.
pub fn client_config(roots: rustls::RootCertStore) -> Result<rustls::ClientConfig> {
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("rustls's default protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// The certificate a TLS server presents to a new handshake, verified against `ca_pem` alone
/// for `server_name` (also sent as SNI). The TCP connection is the standard input and output of
/// `relay`, which must end within seconds when the server is silent (`deputy-e2e-tool relay`
/// times out after 10 s), so a new connection gets what a new client would, whatever kept-alive
/// connections (the API server's) still see.
pub fn served_certificate(relay: Command, server_name: &str, ca_pem: &str) -> Result<Certificate> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(
            Certificate::from_pem(ca_pem.as_bytes()).0,
        ))
        .context("the CA is a certificate rustls accepts as a root")?;
    let config = client_config(roots)?;
    let name = ServerName::try_from(server_name.to_owned())
        .with_context(|| format!("{server_name:?} is not a DNS name"))?;
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name)
        .context("a rustls client connection")?;
    let mut pipe = Relay::spawn(relay)?;
    let handshake = (|| {
        while tls.is_handshaking() {
            tls.complete_io(&mut pipe)?;
        }
        Ok::<_, std::io::Error>(())
    })();
    if let Err(e) = handshake {
        bail!(
            "no verified TLS handshake: {e}; the relay said: {}",
            pipe.stop()
        );
    }
    let leaf = tls
        .peer_certificates()
        .and_then(|chain| chain.first())
        .context("the server sent no certificate")?;
    let leaf = Certificate(leaf.to_vec());
    pipe.stop();
    Ok(leaf)
}

/// A running relay command: its standard output read, its standard input written.
struct Relay {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
}

impl Relay {
    fn spawn(mut command: Command) -> Result<Relay> {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run the relay {command:?}"))?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().context("the relay's standard output")?;
        Ok(Relay {
            child,
            stdin,
            stdout,
        })
    }

    /// Ends the relay and returns what it wrote to its standard error.
    fn stop(&mut self) -> String {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        let _ = self.child.wait();
        stderr.trim().to_owned()
    }
}

impl Read for Relay {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.stdout.read(buf)
    }
}

impl Write for Relay {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.stdin.as_mut() {
            Some(stdin) => stdin.write(buf),
            None => Err(std::io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stdin.as_mut().map_or(Ok(()), Write::flush)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}
