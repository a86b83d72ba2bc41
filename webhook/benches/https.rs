//! `make bench-webhook` (HTTPS part): a real `deputy-webhook serve` under load at fixed
//! concurrency, with keep-alive and a real AdmissionReview body (a typical 3-container Pod), on
//! loopback. Against a floor measured in the same run: the same actix-web + rustls stack (same
//! provider, protocol versions, ALPN, workers and body reading) answering a precomputed response
//! of the same size. Prints requests/s, p50 and p99 of both and their ratio, p50/p99 at half the
//! measured rate, and the server's RSS. Not a test; every loop is bounded in time.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The floor server runs in a child process of this benchmark, chosen by this variable.
const FLOOR_ENV: &str = "DEPUTY_BENCH_FLOOR";
const CONCURRENCY: usize = 4;
const WARMUP: Duration = Duration::from_millis(500);
const RUN: Duration = Duration::from_secs(3);
const ROUNDS: usize = 3;
/// The default log filter of the benchmarked server: ours (one line per admission), not actix's.
const LOG: &str = "warn,deputy_webhook=info";
const UID: &str = "705ab4f5-6393-11e8-b7cc-42010a800002";

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if let Some(dir) = std::env::var_os(FLOOR_ENV) {
        return floor_server(Path::new(&dir));
    }
    // Removed when dropped, also when a step below panics.
    let tmp = tempfile::Builder::new()
        .prefix("deputy-bench-https-")
        .tempdir()
        .unwrap();
    let dir = tmp.path().to_owned();
    let ca = make_certificates(&dir);
    let body = review_body();

    let deputy = Server::deputy(&dir);
    let deputy_client = Client::new(deputy.addr, &ca);
    // The floor answers exactly what deputy answers to this body.
    let (status, response) = deputy_client.post(&body);
    assert_eq!(status, 200, "{response}");
    assert!(response.contains("JSONPatch") && response.contains(UID));
    std::fs::write(dir.join("response.json"), &response).unwrap();
    let floor = Server::floor(&dir);
    let floor_client = Client::new(floor.addr, &ca);
    assert_eq!(floor_client.post(&body), (200, response.clone()));

    // Alternate rounds and keep each server's best, so that background load on the machine
    // (other builds) does not favour whichever ran in a quiet moment.
    let (mut deputy_run, mut floor_run) = (Run::NONE, Run::NONE);
    for _ in 0..ROUNDS {
        deputy_run = deputy_run.best(load(&deputy_client, deputy.pid(), &body, None));
        floor_run = floor_run.best(load(&floor_client, floor.pid(), &body, None));
    }
    let half_rate = deputy_run.rps / 2.0;
    let paced = load(&deputy_client, deputy.pid(), &body, Some(half_rate));
    let (rss, peak) = deputy.rss_kib();
    let in_handler = deputy.mean_handler_time();

    println!(
        "HTTPS load, {CONCURRENCY} keep-alive connections, {} B request, {} B response, best of {ROUNDS} alternating {}s runs:",
        body.len(),
        response.len(),
        RUN.as_secs()
    );
    println!();
    println!("| server | requests/s | p50 | p99 | server CPU per request |");
    println!("|---|---:|---:|---:|---:|");
    for (name, run) in [
        ("deputy-webhook serve", &deputy_run),
        ("floor: same stack, precomputed response", &floor_run),
    ] {
        println!(
            "| {name} | {:.0} | {} | {} | {} |",
            run.rps,
            micros(run.p50),
            micros(run.p99),
            micros(run.cpu_per_request)
        );
    }
    println!(
        "| deputy-webhook at half that rate ({:.0}/s) | {:.0} | {} | {} | {} |",
        half_rate,
        paced.rps,
        micros(paced.p50),
        micros(paced.p99),
        micros(paced.cpu_per_request)
    );
    println!();
    println!(
        "throughput ratio deputy/floor: {:.2} (goal ≥ 0.9); p99 at half rate: {} (goal < 1 ms)",
        deputy_run.rps / floor_run.rps,
        micros(paced.p99)
    );
    println!(
        "deputy-webhook mean time inside the /mutate handler (body read + review), all runs: {}",
        micros(in_handler)
    );
    println!(
        "deputy-webhook RSS after the runs: {:.1} MiB, peak {:.1} MiB (goal < 30 MiB)",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    println!();
    let first_deputy = first_answers(deputy.addr, &ca, &body);
    let first_floor = first_answers(floor.addr, &ca, &body);
    let first_deputy_h2 = first_answers_h2(deputy.addr, &ca, &body);
    let first_floor_h2 = first_answers_h2(floor.addr, &ca, &body);
    println!(
        "First answer on a new connection (TLS and HTTP/2 handshakes done, client TCP_NODELAY), {NEW_CONNECTIONS} connections each:"
    );
    println!();
    println!("| server | protocol | p50 | max | answers after ≥ 30 ms |");
    println!("|---|---|---:|---:|---:|");
    for (name, protocol, times) in [
        (
            "deputy-webhook serve (TCP_NODELAY on its listener)",
            "HTTP/1.1",
            &first_deputy,
        ),
        (
            "floor: same stack without TCP_NODELAY",
            "HTTP/1.1",
            &first_floor,
        ),
        (
            "deputy-webhook serve (TCP_NODELAY on its listener)",
            "HTTP/2",
            &first_deputy_h2,
        ),
        (
            "floor: same stack without TCP_NODELAY",
            "HTTP/2",
            &first_floor_h2,
        ),
    ] {
        println!(
            "| {name} | {protocol} | {} | {} | {} of {} |",
            micros(times[times.len() / 2]),
            micros(*times.last().expect("measured")),
            times
                .iter()
                .filter(|t| **t >= Duration::from_millis(30))
                .count(),
            times.len()
        );
    }
    drop((deputy, floor, tmp));
}

/// Fresh connections measured by [`first_answers`].
const NEW_CONNECTIONS: usize = 40;

/// For each of [`NEW_CONNECTIONS`] new connections: the time from writing the first request
/// (after the handshake) to its whole answer, sorted.
fn first_answers(addr: std::net::SocketAddr, ca_pem: &str, body: &[u8]) -> Vec<Duration> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    use std::io::Write;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let mut request = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let mut times: Vec<Duration> = (0..NEW_CONNECTIONS)
        .map(|_| {
            let tcp = std::net::TcpStream::connect(addr).unwrap();
            tcp.set_nodelay(true).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let name = ServerName::try_from("localhost").unwrap();
            let conn = rustls::ClientConnection::new(Arc::clone(&config), name).unwrap();
            let mut stream = rustls::StreamOwned::new(conn, tcp);
            while stream.conn.is_handshaking() {
                stream.conn.complete_io(&mut stream.sock).unwrap();
            }
            let sent = Instant::now();
            stream.write_all(&request).unwrap();
            let mut answer = Vec::new();
            let mut buf = [0u8; 16384];
            loop {
                let n = stream.read(&mut buf).unwrap();
                assert!(n > 0, "closed before a whole answer");
                answer.extend_from_slice(&buf[..n]);
                if whole_answer(&answer) {
                    break;
                }
            }
            sent.elapsed()
        })
        .collect();
    times.sort();
    times
}

/// [`first_answers`] over HTTP/2 (ALPN `h2`, as the API server's client): the time from
/// sending the first request, after the TLS and HTTP/2 handshakes, to the end of its answer.
fn first_answers_h2(addr: std::net::SocketAddr, ca_pem: &str, body: &[u8]) -> Vec<Duration> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = bytes::Bytes::copy_from_slice(body);
    let mut times: Vec<Duration> = (0..NEW_CONNECTIONS)
        .map(|_| {
            runtime.block_on(async {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let name = ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await.unwrap();
                assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                let (client, connection) = h2::client::handshake(tls).await.unwrap();
                let driver = tokio::spawn(async move {
                    let _ = connection.await;
                });
                let mut client = client.ready().await.unwrap();
                let request = http02::Request::post("https://localhost/mutate")
                    .header("content-type", "application/json")
                    .body(())
                    .unwrap();
                let sent = Instant::now();
                let (response, mut stream) = client.send_request(request, false).unwrap();
                stream.send_data(body.clone(), true).unwrap();
                let response = response.await.unwrap();
                assert_eq!(response.status(), 200);
                let mut answer = response.into_body();
                while let Some(chunk) = answer.data().await {
                    let chunk = chunk.unwrap();
                    let _ = answer.flow_control().release_capacity(chunk.len());
                }
                let took = sent.elapsed();
                drop(client);
                driver.abort();
                took
            })
        })
        .collect();
    times.sort();
    times
}

/// Whether `answer` holds a whole HTTP/1.1 response with a `Content-Length` body.
fn whole_answer(answer: &[u8]) -> bool {
    let text = String::from_utf8_lossy(answer);
    let Some(head_end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..head_end]
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    answer.len() >= head_end + 4 + length
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

/// A typical Pod (3 containers with env, mounts, probes and a last-applied annotation).
fn review_body() -> Vec<u8> {
    let container = |i: usize| {
        json!({
            "name": format!("c{i}"),
            "image": format!("registry.example/app-{i}:1.2.3"),
            "ports": [{"containerPort": 8080 + i, "name": "http"}],
            "env": (0..8).map(|e| json!({"name": format!("VAR_{e}"), "value": format!("value-{e}")})).collect::<Vec<_>>(),
            "volumeMounts": (0..3).map(|m| json!({"name": format!("v{m}"), "mountPath": format!("/mnt/{m}")})).collect::<Vec<_>>(),
            "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080 + i}},
        })
    };
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "web-7d4b9-", "namespace": "apps", "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(2000)},
        },
        "spec": {
            "containers": (0..3).map(container).collect::<Vec<_>>(),
            "volumes": (0..3).map(|m| json!({"name": format!("v{m}"), "emptyDir": {}})).collect::<Vec<_>>(),
            "terminationGracePeriodSeconds": 30,
        }
    });
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": UID,
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "apps", "operation": "CREATE", "object": pod, "dryRun": false}
    }))
    .unwrap()
}

/// Writes `ca.pem`, `tls.crt`, `tls.key` into `dir`; returns the CA certificate, PEM.
fn make_certificates(dir: &Path) -> String {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "bench CA");
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
    ca_pem
}

/// A server process, killed on drop.
struct Server {
    child: Child,
    addr: std::net::SocketAddr,
    /// deputy's plain-HTTP admin address (the floor has none).
    admin: Option<std::net::SocketAddr>,
}

impl Server {
    fn deputy(dir: &Path) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_deputy-webhook"))
            // The per-admission log line stays on, as in production (`DEPUTY_BENCH_LOG=warn,deputy_webhook::server=info` drops it).
            .arg("--log")
            .arg(std::env::var("DEPUTY_BENCH_LOG").unwrap_or_else(|_| LOG.into()))
            .args(["--log-format", "json"])
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
            ])
            .arg("--tls-cert")
            .arg(dir.join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.join("tls.key"))
            .args(["--agent-image", "registry.example/deputy-agent:1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let addr = first_line(&mut child, stderr, |line| {
            let v: Value = serde_json::from_str(line).ok()?;
            let addr = |key: &str| v[key].as_str()?.parse::<std::net::SocketAddr>().ok();
            (v["message"] == "serving").then(|| Some((addr("listen")?, addr("metrics_listen")?)))?
        });
        let (addr, admin) = (addr.0, Some(addr.1));
        Self { child, addr, admin }
    }

    fn floor(dir: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(FLOOR_ENV, dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let addr = first_line(&mut child, stdout, |line| {
            line.strip_prefix("listening ")?.parse().ok()
        });
        Self {
            child,
            addr,
            admin: None,
        }
    }

    /// Mean time inside the `/mutate` handler (body read and review), from deputy's histogram.
    fn mean_handler_time(&self) -> Duration {
        let url = format!("http://{}/metrics", self.admin.unwrap());
        let text = ureq::get(url)
            .call()
            .unwrap()
            .body_mut()
            .read_to_string()
            .unwrap();
        let sample = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap()
        };
        let (sum, count) = (
            sample("deputy_admission_duration_seconds_sum"),
            sample("deputy_admission_duration_seconds_count"),
        );
        Duration::from_secs_f64(sum / count)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// (VmRSS, VmHWM) in KiB.
    fn rss_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `child`'s lines (for at most 30 s) until `parse` accepts one; the rest is drained in a
/// thread. A child that never gets there is killed before the panic, not left running.
fn first_line<T>(
    child: &mut Child,
    stream: impl Read + Send + 'static,
    parse: impl Fn(&str) -> Option<T>,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not say it was listening within 30 s (or it exited); killed");
        };
        if let Some(v) = parse(&line) {
            return v;
        }
    }
}

/// An HTTPS client trusting only the bench CA; each clone of the agent shares the pool, so each
/// load thread makes its own.
struct Client {
    addr: std::net::SocketAddr,
    ca_pem: String,
    agent: ureq::Agent,
}

impl Client {
    fn new(addr: std::net::SocketAddr, ca_pem: &str) -> Self {
        Self {
            addr,
            ca_pem: ca_pem.to_owned(),
            agent: agent(ca_pem),
        }
    }

    fn url(&self) -> String {
        format!("https://localhost:{}/mutate", self.addr.port())
    }

    fn post(&self, body: &[u8]) -> (u16, String) {
        post(&self.agent, &self.url(), body)
    }
}

fn agent(ca_pem: &str) -> ureq::Agent {
    let ca = ureq::tls::Certificate::from_pem(ca_pem.as_bytes()).unwrap();
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

fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> (u16, String) {
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_string().unwrap())
}

struct Run {
    rps: f64,
    p50: Duration,
    p99: Duration,
    /// The server process's user + system CPU time over the run, per request.
    cpu_per_request: Duration,
}

impl Run {
    const NONE: Run = Run {
        rps: 0.0,
        p50: Duration::ZERO,
        p99: Duration::ZERO,
        cpu_per_request: Duration::ZERO,
    };

    fn best(self, other: Run) -> Run {
        if other.rps > self.rps {
            other
        } else {
            self
        }
    }
}

/// User + system CPU time of a process, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Duration::from_secs_f64(ticks as f64 / per_second as f64)
}

/// `CONCURRENCY` threads, one keep-alive connection each, as fast as answers come (`rate` None)
/// or paced to `rate` requests/s in total (latency counted from the scheduled send time, so a
/// stall is not hidden).
fn load(client: &Client, pid: u32, body: &[u8], rate: Option<f64>) -> Run {
    let url = client.url();
    let cpu_before = cpu_time(pid);
    let threads: Vec<_> = (0..CONCURRENCY)
        .map(|t| {
            let (agent, url, body) = (agent(&client.ca_pem), url.clone(), body.to_vec());
            std::thread::spawn(move || {
                let interval = rate.map(|r| Duration::from_secs_f64(CONCURRENCY as f64 / r));
                let start = Instant::now();
                // Stagger paced threads so they do not all send at once.
                let mut next =
                    start + interval.map_or(Duration::ZERO, |i| i * t as u32 / CONCURRENCY as u32);
                let mut latencies = Vec::new();
                let (mut counted, mut sent) = (0usize, 0usize);
                loop {
                    let now = Instant::now();
                    if now >= start + WARMUP + RUN {
                        break;
                    }
                    let sent_at = match interval {
                        Some(i) => {
                            if next > now {
                                std::thread::sleep(next - now);
                            }
                            let s = next;
                            next += i;
                            s
                        }
                        None => now,
                    };
                    let (status, _) = post(&agent, &url, &body);
                    assert_eq!(status, 200);
                    sent += 1;
                    if sent_at >= start + WARMUP {
                        latencies.push(sent_at.elapsed());
                        counted += 1;
                    }
                }
                (latencies, counted, sent)
            })
        })
        .collect();
    let mut all = Vec::new();
    let (mut total, mut all_sent) = (0, 0);
    for t in threads {
        let (latencies, counted, sent) = t.join().unwrap();
        all.extend(latencies);
        total += counted;
        all_sent += sent;
    }
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Run {
        rps: total as f64 / RUN.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
        cpu_per_request: cpu / u32::try_from(all_sent.max(1)).unwrap(),
    }
}

/// The floor: actix-web + rustls as `serve` sets them up, answering `response.json` to any
/// `POST /mutate` after reading its body, like `serve` reads it.
fn floor_server(dir: &Path) {
    use actix_web::{web, App, HttpResponse, HttpServer};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    let response = web::Bytes::from(std::fs::read(dir.join("response.json")).unwrap());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("tls.crt"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("tls.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("listening {}", listener.local_addr().unwrap());
    let limit = deputy_webhook::server::MAX_BODY_BYTES;
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let response = response.clone();
            App::new().route(
                "/mutate",
                web::post().to(move |payload: web::Payload| {
                    let response = response.clone();
                    async move {
                        let _body = payload.to_bytes_limited(limit).await;
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(response)
                    }
                }),
            )
        })
        .keep_alive(deputy_webhook::server::KEEP_ALIVE)
        .listen_rustls_0_23(listener, config)
        .unwrap()
        .run()
        .await
        .unwrap();
    });
}
