//! `deputy-e2e-tool`: the one static binary inside the `localhost/deputy-e2e-tool:e2e` image.
//!
//! It is what the e2e tests run in Pods where busybox cannot do the job:
//!
//! * `webhook --cert FILE --key FILE [--port N] [--add-container NAME=IMAGE]`: an HTTPS mutating
//!   admission webhook on `POST /mutate` that adds the annotation
//!   `e2e.k8s-deputy.io/mutated: <its hostname>` and, with `--add-container`, appends a container
//!   NAME running `sleep 3600` in IMAGE unless the Pod already has one of that name (idempotent,
//!   as a webhook with `reinvocationPolicy: IfNeeded` must be);
//! * `bind-unix PATH`: binds a UNIX socket at PATH and answers `pong` to every connection;
//! * `connect-unix PATH`: connects to PATH and prints what it reads;
//! * `write-file PATH`: tries to create PATH and says whether it could;
//! * `cat PATH`: prints a file;
//! * `relay IP:PORT`: connects to IP:PORT over TCP and copies its standard input to the
//!   connection and the connection to its standard output, until the peer closes it or is silent
//!   for 10 s (the suite's TLS probe runs it inside the node's network namespace);
//! * `https-get HOST:PORT PATH CA_FILE [TOKEN_FILE]`: one HTTPS GET (TLS 1.2 or 1.3, the server
//!   verified against CA_FILE alone for HOST, with `Authorization: Bearer` from TOKEN_FILE), printing
//!   the status code and the body. busybox's wget cannot do this against Kubernetes ≥ 1.35: its TLS
//!   1.2 client offers only SHA-1 signatures, which Go (since 1.25) refuses;
//! * `http-load IP:PORT close|keepalive WORKERS INTERVAL MAX`: HTTP GETs from WORKERS clients,
//!   INTERVAL apart, until standard input closes or MAX passes, then one JSON line: what was
//!   lost and why (`deputy_e2e::load`).
//!
//! * `as-uid UID PROG [ARGS...]`: runs PROG as UID (and GID UID), without supplementary groups
//!   or capabilities, and exits with its status (a process of another user in the same
//!   container; busybox's `setpriv` cannot change the UID);
//! * `chmod OCTAL PATH`: sets PATH's mode.
//!
//! Exit codes: 0 on success, 1 when the operation failed, 2 on a usage error.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use base64::Engine;

/// The annotation the webhook adds; the tests look for it on the stored Pod.
const ANNOTATION: &str = "e2e.k8s-deputy.io/mutated";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("webhook") => webhook(&args[1..]),
        Some("bind-unix") if args.len() == 2 => bind_unix(&args[1]),
        Some("connect-unix") if args.len() == 2 => connect_unix(&args[1]),
        Some("write-file") if args.len() == 2 => write_file(&args[1]),
        Some("cat") if args.len() == 2 => cat(&args[1]),
        Some("relay") if args.len() == 2 => relay(&args[1]),
        Some("https-get") if (4..=5).contains(&args.len()) => https_get(
            &args[1],
            &args[2],
            &args[3],
            args.get(4).map(String::as_str),
        ),
        Some("http-load") if args.len() == 6 => http_load(&args[1..]),
        Some("as-uid") if args.len() >= 3 => return as_uid(&args[1], &args[2..]),
        Some("chmod") if args.len() == 3 => chmod(&args[1], &args[2]),
        _ => {
            eprintln!(
                "usage: deputy-e2e-tool webhook --cert FILE --key FILE [--port N] \
                 [--add-container NAME=IMAGE] | bind-unix PATH \
                 | connect-unix PATH | write-file PATH | cat PATH | relay IP:PORT \
                 | https-get HOST:PORT PATH CA_FILE [TOKEN_FILE] \
                 | http-load IP:PORT close|keepalive WORKERS INTERVAL MAX \
                 | as-uid UID PROG [ARGS...] | chmod OCTAL PATH"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("deputy-e2e-tool: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `as-uid`: the child's exit status, or 1 when it cannot run.
fn as_uid(uid: &str, command: &[String]) -> ExitCode {
    use std::os::unix::process::CommandExt;
    let Ok(id) = uid.parse::<u32>() else {
        eprintln!("deputy-e2e-tool: as-uid: {uid:?} is not a numeric UID");
        return ExitCode::from(2);
    };
    // Run as root, std drops the supplementary groups (setgroups(0)) before the UID change;
    // the capabilities go with the UID.
    let status = std::process::Command::new(&command[0])
        .args(&command[1..])
        .gid(id)
        .uid(id)
        .status();
    match status {
        Ok(status) => ExitCode::from(u8::try_from(status.code().unwrap_or(1)).unwrap_or(1)),
        Err(e) => {
            eprintln!("deputy-e2e-tool: as-uid: cannot run {}: {e}", command[0]);
            ExitCode::FAILURE
        }
    }
}

/// `chmod`: sets the mode of PATH.
fn chmod(mode: &str, path: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode =
        u32::from_str_radix(mode, 8).with_context(|| format!("{mode:?} is no octal mode"))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {path}"))
}

/// `http-load`: runs until stdin closes (the test is done) or MAX passes (the test died).
fn http_load(args: &[String]) -> Result<()> {
    use deputy_e2e::load::{self, LoadPlan};
    use std::sync::atomic::{AtomicBool, Ordering};
    let duration = |what: &str, text: &str| {
        humantime::parse_duration(text)
            .with_context(|| format!("{what} {text:?} is not a duration"))
    };
    let plan = LoadPlan {
        target: args[0]
            .parse()
            .with_context(|| format!("target {:?}", args[0]))?,
        mode: args[1].parse().map_err(anyhow::Error::msg)?,
        workers: args[2]
            .parse()
            .with_context(|| format!("workers {:?}", args[2]))?,
        interval: duration("interval", &args[3])?,
    };
    let max = duration("max", &args[4])?;
    let stop = AtomicBool::new(false);
    let summary = std::thread::scope(|scope| {
        scope.spawn(|| {
            let started = std::time::Instant::now();
            let (tx, rx) = std::sync::mpsc::channel::<()>();
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
                let _ = tx.send(());
            });
            let _ = rx.recv_timeout(max.saturating_sub(started.elapsed()));
            stop.store(true, Ordering::SeqCst);
        });
        load::run(&plan, &stop)
    });
    println!("{summary}");
    Ok(())
}

fn webhook(args: &[String]) -> Result<()> {
    let (mut cert, mut key, mut port) = (None, None, 8443u16);
    let mut add: Option<(String, String)> = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--cert" => cert = Some(value.clone()),
            "--key" => key = Some(value.clone()),
            "--port" => port = value.parse().context("--port must be a number")?,
            "--add-container" => {
                let (name, image) = value
                    .split_once('=')
                    .context("--add-container takes NAME=IMAGE")?;
                add = Some((name.to_owned(), image.to_owned()));
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    let cert = cert.context("--cert must be set")?;
    let key = key.context("--key must be set")?;
    let ssl = tiny_http::SslConfig {
        certificate: std::fs::read(&cert).with_context(|| format!("cannot read --cert {cert}"))?,
        private_key: std::fs::read(&key).with_context(|| format!("cannot read --key {key}"))?,
    };
    let server = tiny_http::Server::https(("0.0.0.0", port), ssl)
        .map_err(|e| anyhow::anyhow!("cannot serve HTTPS on port {port}: {e}"))?;
    let host = hostname();
    println!("webhook {host} serving https on :{port}");
    for mut request in server.incoming_requests() {
        let mut body = String::new();
        let reply = match request.as_reader().read_to_string(&mut body) {
            Ok(_) if request.url().starts_with("/mutate") => review(&body, &host, add.as_ref()),
            Ok(_) => Err(anyhow::anyhow!("no handler for {}", request.url())),
            Err(e) => Err(e.into()),
        };
        let response = match reply {
            Ok(json) => tiny_http::Response::from_string(json).with_header(
                "Content-Type: application/json"
                    .parse::<tiny_http::Header>()
                    .expect("static header"),
            ),
            Err(e) => {
                println!("rejecting {} {}: {e:#}", request.method(), request.url());
                tiny_http::Response::from_string(format!("{e:#}")).with_status_code(400)
            }
        };
        let _ = request.respond(response);
    }
    Ok(())
}

/// Answers an AdmissionReview: allowed, with a JSON Patch that adds [`ANNOTATION`] and, when
/// asked, the container `add` (name, image) if the Pod has none of that name.
fn review(body: &str, host: &str, add: Option<&(String, String)>) -> Result<String> {
    let review: serde_json::Value = serde_json::from_str(body).context("body is not JSON")?;
    let request = &review["request"];
    let uid = request["uid"]
        .as_str()
        .context("AdmissionReview has no request.uid")?;
    let has_annotations = request["object"]["metadata"]["annotations"].is_object();
    let mut patch = if has_annotations {
        let escaped = ANNOTATION.replace('~', "~0").replace('/', "~1");
        serde_json::json!([{"op": "add", "path": format!("/metadata/annotations/{escaped}"), "value": host}])
    } else {
        serde_json::json!([{"op": "add", "path": "/metadata/annotations", "value": {ANNOTATION: host}}])
    };
    let containers = request["object"]["spec"]["containers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let mut added = false;
    if let Some((name, image)) = add {
        if !names.contains(&name.as_str()) {
            added = true;
            patch
                .as_array_mut()
                .expect("a patch is an array")
                .push(serde_json::json!({
                    "op": "add", "path": "/spec/containers/-",
                    "value": {
                        "name": name, "image": image, "imagePullPolicy": "Never",
                        "command": ["sleep", "3600"],
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "capabilities": {"drop": ["ALL"]},
                            "runAsNonRoot": true,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                    },
                }));
        }
    }
    println!(
        "mutating {} {}/{} (uid {uid}) containers={} added={added}",
        request["kind"]["kind"].as_str().unwrap_or("?"),
        request["namespace"].as_str().unwrap_or(""),
        request["object"]["metadata"]["name"]
            .as_str()
            .or(request["object"]["metadata"]["generateName"].as_str())
            .unwrap_or("?"),
        names.join(","),
    );
    let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    Ok(serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true, "patchType": "JSONPatch", "patch": patch},
    })
    .to_string())
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn bind_unix(path: &str) -> Result<()> {
    let listener = UnixListener::bind(path).with_context(|| format!("bind({path})"))?;
    println!("listening on {path}");
    for conn in listener.incoming() {
        let mut conn = conn.context("accept")?;
        let _ = conn.write_all(b"pong\n");
    }
    Ok(())
}

fn connect_unix(path: &str) -> Result<()> {
    let mut conn = UnixStream::connect(path).with_context(|| format!("connect({path})"))?;
    let mut reply = String::new();
    conn.read_to_string(&mut reply).context("read")?;
    print!("{reply}");
    Ok(())
}

fn write_file(path: &str) -> Result<()> {
    std::fs::write(path, b"x").with_context(|| format!("cannot create {path}"))?;
    println!("created {path}");
    Ok(())
}

fn cat(path: &str) -> Result<()> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    print!("{text}");
    Ok(())
}

fn relay(addr: &str) -> Result<()> {
    let addr: SocketAddr = addr.parse().context("relay takes IP:PORT")?;
    let timeout = Duration::from_secs(10);
    let conn =
        TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect({addr})"))?;
    conn.set_read_timeout(Some(timeout))
        .context("set the read timeout")?;
    let mut upstream = conn.try_clone().context("clone the connection")?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut upstream);
        let _ = upstream.shutdown(Shutdown::Write);
    });
    // Each chunk is flushed at once: the peer on our standard output (a TLS client) waits for it,
    // and std's stdout would hold binary data back until a newline.
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = (&conn)
            .read(&mut buf)
            .with_context(|| format!("read from {addr}"))?;
        if n == 0 {
            return Ok(());
        }
        out.write_all(&buf[..n])
            .context("write to standard output")?;
        out.flush().context("flush standard output")?;
    }
}

fn https_get(addr: &str, path: &str, ca_file: &str, token_file: Option<&str>) -> Result<()> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let (host, _) = addr.rsplit_once(':').context("https-get takes HOST:PORT")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).with_context(|| format!("read {ca_file}"))? {
        roots
            .add(cert.with_context(|| format!("a certificate in {ca_file}"))?)
            .with_context(|| format!("{ca_file} holds a certificate rustls accepts as a root"))?;
    }
    let config = deputy_e2e::tls::client_config(roots)?;
    let name = ServerName::try_from(host.to_owned())
        .with_context(|| format!("{host:?} is neither an IP address nor a DNS name"))?;
    let tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name)
        .context("a rustls client connection")?;
    let timeout = Duration::from_secs(10);
    let tcp = std::net::ToSocketAddrs::to_socket_addrs(addr)
        .with_context(|| format!("resolve {addr}"))?
        .next()
        .with_context(|| format!("{addr} resolves to nothing"))?;
    let tcp =
        TcpStream::connect_timeout(&tcp, timeout).with_context(|| format!("connect({addr})"))?;
    tcp.set_read_timeout(Some(timeout))
        .context("set the read timeout")?;
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    let auth = match token_file {
        Some(f) => {
            let token = std::fs::read_to_string(f).with_context(|| format!("read {f}"))?;
            format!("Authorization: Bearer {}\r\n", token.trim())
        }
        None => String::new(),
    };
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .with_context(|| format!("send the request to {addr} (TLS)"))?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // A server that closes without close_notify still sent a whole response.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e).with_context(|| format!("read the response from {addr}")),
    }
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).unwrap_or("?");
    println!("{status} {body}");
    Ok(())
}
