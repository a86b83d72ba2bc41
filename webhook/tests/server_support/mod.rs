//! Helpers of the server tests: a test CA and certificates (rcgen), a certificate directory laid
//! out like a Kubernetes Secret volume, a real `deputy-webhook serve` process, and real clients
//! (ureq over rustls trusting only the test CA; raw rustls and TCP for what ureq cannot do).

#![allow(dead_code)]

#[path = "../under_test/mod.rs"]
mod under_test;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

/// Polls `f` every 20 ms until it returns `Some` or `limit` passes.
pub fn poll<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server started on a Secret volume holding a certificate named `first`, and ready.
pub fn started() -> (Ca, SecretVolume, Server) {
    started_with(&[])
}

/// [`started`], with `extra` arguments to `serve`.
pub fn started_with(extra: &[&str]) -> (Ca, SecretVolume, Server) {
    let ca = Ca::new();
    let certs = SecretVolume::new(&ca.leaf("first"));
    let server = Server::start(&ca, &certs, extra);
    server.wait_ready();
    (ca, certs, server)
}

/// A test certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
    /// The CA certificate, DER.
    pub der: CertificateDer<'static>,
}

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Pair {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Ca {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "deputy-webhook test CA");
        let cert = params.self_signed(&key).unwrap();
        Self {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
            der: cert.der().clone(),
        }
    }

    /// A serving certificate for `localhost`, 127.0.0.1 and ::1, named `cn`.
    pub fn leaf(&self, cn: &str) -> Pair {
        self.leaf_with(cn, |_| {})
    }

    /// A serving certificate that expired in 2001.
    pub fn expired_leaf(&self, cn: &str) -> Pair {
        self.leaf_with(cn, |p| {
            p.not_before = rcgen::date_time_ymd(2000, 1, 1);
            p.not_after = rcgen::date_time_ymd(2001, 1, 1);
        })
    }

    fn leaf_with(&self, cn: &str, edit: impl FnOnce(&mut CertificateParams)) -> Pair {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
        ])
        .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        edit(&mut params);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pair {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A fresh directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("deputy-webhook-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A directory laid out like a Kubernetes Secret volume: `tls.crt -> ..data/tls.crt`,
/// `..data -> ..<version>`; an update writes a new version directory and renames a new `..data`
/// symlink over the old one (what the kubelet's atomic writer does).
pub struct SecretVolume {
    pub dir: TempDir,
    version: usize,
}

impl SecretVolume {
    pub fn new(pair: &Pair) -> Self {
        let dir = TempDir::new("certs");
        std::os::unix::fs::symlink("..data/tls.crt", dir.0.join("tls.crt")).unwrap();
        std::os::unix::fs::symlink("..data/tls.key", dir.0.join("tls.key")).unwrap();
        let mut volume = Self { dir, version: 0 };
        volume.update(&pair.cert_pem, &pair.key_pem);
        volume
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.0.join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.0.join("tls.key")
    }

    /// Swaps in new contents atomically.
    pub fn update(&mut self, cert_pem: &str, key_pem: &str) {
        self.version += 1;
        let name = format!("..2026_11_25_00_00_00.{}", self.version);
        let version_dir = self.dir.0.join(&name);
        std::fs::create_dir(&version_dir).unwrap();
        std::fs::write(version_dir.join("tls.crt"), cert_pem).unwrap();
        std::fs::write(version_dir.join("tls.key"), key_pem).unwrap();
        let tmp = self.dir.0.join("..data_tmp");
        std::os::unix::fs::symlink(&name, &tmp).unwrap();
        let old = std::fs::read_link(self.dir.0.join("..data")).ok();
        std::fs::rename(&tmp, self.dir.0.join("..data")).unwrap();
        if let Some(old) = old {
            let _ = std::fs::remove_dir_all(self.dir.0.join(old));
        }
    }

    pub fn rotate(&mut self, pair: &Pair) {
        self.update(&pair.cert_pem, &pair.key_pem);
    }
}

/// A running `deputy-webhook serve`, killed on drop.
pub struct Server {
    child: Child,
    /// HTTPS address of `/mutate`.
    pub addr: SocketAddr,
    /// Plain-HTTP admin address.
    pub admin: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    ca_pem: String,
    ca_der: CertificateDer<'static>,
}

/// The default image given with `--agent-image`.
pub const AGENT_IMAGE: &str = "registry.example/deputy-agent:test";

impl Server {
    /// Starts the server on loopback ports chosen by the kernel, and waits until it listens.
    pub fn start(ca: &Ca, certs: &SecretVolume, extra: &[&str]) -> Self {
        Self::start_with_files(ca, &certs.cert(), &certs.key(), extra)
    }

    /// Starts the server with certificate files anywhere.
    pub fn start_with_files(ca: &Ca, cert: &Path, key: &Path, extra: &[&str]) -> Self {
        let mut child = under_test::webhook_command()
            .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
            .args(["--metrics-listen", "127.0.0.1:0"])
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .args(["--agent-image", AGENT_IMAGE])
            .args(extra)
            // No cluster, no kubeconfig: `serve` must not look for one.
            .env("KUBECONFIG", "/nonexistent/kubeconfig")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn deputy-webhook");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("DEPUTY_TEST_VERBOSE").is_some() {
                    eprintln!("server: {line}");
                }
                sink.lock().unwrap().push(line);
            }
        });
        let serving = poll(Duration::from_secs(30), || {
            let logs = logs.lock().unwrap();
            logs.iter()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["message"] == "serving")
        });
        let Some(serving) = serving else {
            let _ = child.kill();
            panic!(
                "server did not start; logs:\n{}",
                logs.lock().unwrap().join("\n")
            );
        };
        let addr = serving["listen"].as_str().unwrap().parse().unwrap();
        let admin = serving["metrics_listen"].as_str().unwrap().parse().unwrap();
        Self {
            child,
            addr,
            admin,
            logs,
            ca_pem: ca.pem.clone(),
            ca_der: ca.der.clone(),
        }
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }

    /// Waits (bounded) until `/readyz` answers 200.
    pub fn wait_ready(&self) {
        let ready = poll(Duration::from_secs(20), || {
            (self.admin_get("/readyz").map(|r| r.0) == Some(200)).then_some(())
        });
        assert!(
            ready.is_some(),
            "not ready; logs:\n{}",
            self.logs().join("\n")
        );
    }

    /// Every log line so far, as JSON.
    pub fn json_logs(&self) -> Vec<Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// Waits (bounded) for a log line matching `pred`.
    pub fn wait_log(&self, limit: Duration, pred: impl Fn(&Value) -> bool) -> Option<Value> {
        poll(limit, || self.json_logs().into_iter().find(|v| pred(v)))
    }

    /// `GET` on the admin port: status and body, `None` if the connection failed.
    pub fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .into();
        let mut response = agent
            .get(format!("http://{}{path}", self.admin))
            .call()
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.body_mut().read_to_string().ok()?))
    }

    /// One sample of `/metrics`, e.g. `deputy_tls_reloads_total{result="loaded"}`.
    pub fn metric(&self, sample: &str) -> Option<f64> {
        let (_, text) = self.admin_get("/metrics")?;
        text.lines()
            .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
    }

    /// An HTTPS client that trusts only the test CA (keep-alive pool of its own).
    pub fn client(&self) -> ureq::Agent {
        let ca = ureq::tls::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap();
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![ca])))
            .build();
        ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into()
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.addr.port())
    }

    /// `POST /mutate` with `body` through `client`: status and body.
    pub fn post_with(
        &self,
        client: &ureq::Agent,
        body: &[u8],
    ) -> Result<(u16, String), ureq::Error> {
        let mut response = client
            .post(self.url("/mutate"))
            .header("Content-Type", "application/json")
            .send(body)?;
        let status = response.status().as_u16();
        Ok((status, response.body_mut().read_to_string()?))
    }

    pub fn post(&self, body: &[u8]) -> (u16, String) {
        self.post_with(&self.client(), body).expect("POST /mutate")
    }

    /// A TLS connection to the server, handshake done, trusting only the test CA.
    pub fn tls_connect(&self) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        tls_connect(self.addr, &self.ca_der)
    }

    /// The leaf certificate a new handshake is served.
    pub fn presented_cert(&self) -> CertificateDer<'static> {
        let stream = self.tls_connect();
        stream.conn.peer_certificates().unwrap()[0].clone()
    }

    pub fn sigterm(&self) {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(self.pid(), libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM)");
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        poll(limit, || self.child.try_wait().unwrap())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A rustls client config trusting only `ca`.
pub fn client_config(ca: &CertificateDer<'static>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// Connects and completes a TLS handshake for `localhost`.
pub fn tls_connect(
    addr: SocketAddr,
    ca: &CertificateDer<'static>,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(client_config(ca), name).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock).unwrap();
    }
    stream
}

/// Reads until EOF, an error or `limit`; returns what arrived and whether the peer closed.
pub fn read_until_closed(stream: &mut impl Read, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match stream.read(&mut buf) {
            Ok(0) => return (out, true),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return (out, true),
        }
    }
    (out, false)
}

/// Writes `head` then `body` pieces, raw, on an HTTP/1.1 connection.
pub fn write_all(stream: &mut impl Write, bytes: &[u8]) {
    stream.write_all(bytes).unwrap();
    stream.flush().unwrap();
}

/// The status code of a raw HTTP/1.1 response, if one arrived.
pub fn status_of(response: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(response.get(..12)?).ok()?;
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// An AdmissionReview for a Pod CREATE in namespace `apps` with one container `app`.
pub fn pod_review(uid: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "apps",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "web-7d9f-", "namespace": "apps",
                             "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}
            },
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    }))
    .unwrap()
}

/// Path helper for messages.
pub fn show(p: &Path) -> String {
    p.display().to_string()
}
