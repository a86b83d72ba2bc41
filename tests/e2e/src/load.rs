//! A bounded HTTP load that counts every request lost: what `deputy-e2e-tool http-load` runs
//! inside the node's network namespace, against a Service's ClusterIP, while Pods behind it are
//! replaced or deleted.
//!
//! Two ways of connecting, as real clients do:
//! * `close`: one new TCP connection per request (`Connection: close`), as kube-proxy sees
//!   short-lived clients;
//! * `keepalive`: a few long-lived connections reused for request after request. Like ordinary
//!   HTTP clients (Go's `net/http`, browsers, ...), a request whose reused connection turns out
//!   to be closed under it before any byte of the answer came back is retried once, on a new
//!   connection: the request is idempotent (GET) and the server never saw it.
//!
//! A request fails when it is refused, reset, times out, or gets a status other than 200. The
//! tool never retries anything else; it counts and reports. A connect timeout also names the Pod
//! address the Service's DNAT sent the unanswered SYN to (from the connection tracking entry of
//! its source port), so a test can tell a SYN lost to a terminating Pod from one lost elsewhere.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use socket2::{Domain, Protocol, Socket, Type};

/// Connect and read deadlines of one request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Failure messages kept for the report (the counts are complete).
const KEEP_ERRORS: usize = 12;

/// How requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A new connection per request.
    Close,
    /// Reused connections, with the one retry ordinary clients make.
    KeepAlive,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "close" => Ok(Mode::Close),
            "keepalive" => Ok(Mode::KeepAlive),
            other => Err(format!("mode {other:?}: expected close or keepalive")),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// The Service's address.
    pub target: SocketAddr,
    /// How.
    pub mode: Mode,
    /// Parallel clients (each its own connection in `keepalive`).
    pub workers: usize,
    /// Pause between two requests of one worker.
    pub interval: Duration,
}

/// What happened, for the whole run.
#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    ok: u64,
    retried: u64,
    failures: BTreeMap<&'static str, u64>,
    backends: BTreeMap<String, u64>,
    /// Timeouts by the Pod address the SYN was sent to (`unknown` when that is not known,
    /// and for every timeout after the connection was made).
    timeouts_to: BTreeMap<String, u64>,
    errors: Vec<String>,
}

/// Runs `plan` until `stop` is set; returns the summary as JSON (`requests`, `ok`, `failed`,
/// `recovered_by_retry` (keep-alive requests saved by the one retry), `failures` by kind,
/// `backends` by answering Pod, `timeouts_to` by the Pod address a timed-out request was sent
/// to, the first `errors`).
pub fn run(plan: &LoadPlan, stop: &AtomicBool) -> Value {
    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    std::thread::scope(|scope| {
        for _ in 0..plan.workers.max(1) {
            let tally = Arc::clone(&tally);
            scope.spawn(move || worker(plan, stop, started, &tally));
        }
    });
    let tally = tally.lock().expect("not poisoned");
    let failed: u64 = tally.failures.values().sum();
    json!({
        "mode": match plan.mode { Mode::Close => "close", Mode::KeepAlive => "keepalive" },
        "seconds": started.elapsed().as_secs_f64(),
        "requests": tally.requests,
        "ok": tally.ok,
        "failed": failed,
        "recovered_by_retry": tally.retried,
        "failures": tally.failures,
        "backends": tally.backends,
        "timeouts_to": tally.timeouts_to,
        "errors": tally.errors,
    })
}

fn worker(plan: &LoadPlan, stop: &AtomicBool, started: Instant, tally: &Mutex<Tally>) {
    let mut kept: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::SeqCst) {
        let result = match plan.mode {
            Mode::Close => request(&mut connect(plan.target), false).map(|(a, _)| (a, false)),
            Mode::KeepAlive => keepalive_request(plan.target, &mut kept),
        };
        let mut t = tally.lock().expect("not poisoned");
        t.requests += 1;
        match result {
            Ok((answer, retried)) => {
                t.ok += 1;
                t.retried += u64::from(retried);
                *t.backends.entry(answer).or_default() += 1;
            }
            Err(failure) => {
                *t.failures.entry(failure.kind).or_default() += 1;
                if failure.kind == "timeout" {
                    let to = failure.sent_to.as_deref().unwrap_or("unknown");
                    *t.timeouts_to.entry(to.to_owned()).or_default() += 1;
                }
                if t.errors.len() < KEEP_ERRORS {
                    let at = started.elapsed().as_secs_f64();
                    t.errors
                        .push(format!("{at:.3}s {}: {}", failure.kind, failure.detail));
                }
            }
        }
        drop(t);
        std::thread::sleep(plan.interval);
    }
}

/// A lost request: its kind (the report's key) and what happened.
#[derive(Debug)]
struct Failure {
    kind: &'static str,
    detail: String,
    /// Nothing of an answer arrived (so a reused connection may be retried).
    before_answer: bool,
    /// Where the Service's DNAT sent the connection (known for connect timeouts).
    sent_to: Option<String>,
}

impl Failure {
    fn io(err: &io::Error, before_answer: bool) -> Self {
        use io::ErrorKind::*;
        let kind = match err.kind() {
            ConnectionRefused => "refused",
            ConnectionReset | ConnectionAborted | BrokenPipe => "reset",
            TimedOut | WouldBlock => "timeout",
            HostUnreachable | NetworkUnreachable => "unreachable",
            UnexpectedEof => "closed",
            _ => "other",
        };
        Failure {
            kind,
            detail: err.to_string(),
            before_answer,
            sent_to: None,
        }
    }
}

fn connect(target: SocketAddr) -> Result<BufReader<TcpStream>, Failure> {
    let socket = Socket::new(
        Domain::for_address(target),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(|e| Failure::io(&e, true))?;
    if let Err(err) = socket.connect_timeout(&target.into(), CONNECT_TIMEOUT) {
        let mut failure = Failure::io(&err, true);
        if failure.kind == "timeout" {
            // Where the kernel sent the unanswered SYN: the connection tracking entry of this
            // source port names the Pod its DNAT chose, and the entry's state.
            let port = socket
                .local_addr()
                .ok()
                .and_then(|a| a.as_socket())
                .map(|a| a.port());
            if let Some(port) = port {
                let entries = conntrack_of(port);
                failure.sent_to = dnat_destination(&entries);
                failure.detail = format!("{} from port {port}; {entries}", failure.detail);
            }
        }
        return Err(failure);
    }
    let stream: TcpStream = socket.into();
    stream
        .set_read_timeout(Some(READ_TIMEOUT))
        .and_then(|()| stream.set_nodelay(true))
        .map_err(|e| Failure::io(&e, true))?;
    Ok(BufReader::new(stream))
}

/// The connection tracking entries of TCP source port `port`, as `conntrack -L` prints them.
fn conntrack_of(port: u16) -> String {
    match std::process::Command::new("conntrack")
        .args(["-L", "-p", "tcp", "--orig-port-src", &port.to_string()])
        .output()
    {
        Ok(out) => format!(
            "conntrack: {}",
            String::from_utf8_lossy(&out.stdout)
                .trim()
                .replace('\n', " | ")
        ),
        Err(err) => format!("conntrack not run: {err}"),
    }
}

/// The address the DNAT chose, from a `conntrack -L` entry: the reply direction's source, the
/// second `src=` of the line (`tcp 6 118 SYN_SENT src=<node> dst=<ClusterIP> sport=.. dport=80
/// [UNREPLIED] src=<Pod> dst=<node> ...`). None unless exactly one entry names one.
fn dnat_destination(entries: &str) -> Option<String> {
    let body = entries.strip_prefix("conntrack: ")?;
    let mut lines = body.split(" | ").filter(|l| !l.trim().is_empty());
    let line = lines.next()?;
    if lines.next().is_some() {
        return None;
    }
    line.split_whitespace()
        .filter_map(|field| field.strip_prefix("src="))
        .nth(1)
        .map(str::to_owned)
}

/// One request over a kept connection, opened if there is none; a kept connection found closed
/// before any answer gets the single retry on a new one. Ok: (answering Pod, retried).
fn keepalive_request(
    target: SocketAddr,
    kept: &mut Option<BufReader<TcpStream>>,
) -> Result<(String, bool), Failure> {
    let reused = kept.is_some();
    let mut conn = match kept.take() {
        Some(conn) => Ok(conn),
        None => connect(target),
    };
    let first = request(&mut conn, true);
    let (result, retried) = match first {
        Err(failure) if reused && failure.before_answer => {
            conn = connect(target);
            (request(&mut conn, true), true)
        }
        other => (other, false),
    };
    let (answer, keep) = result?;
    if !reused || retried {
        // Which Pod this connection reached: the tests pick a Pod to delete that has one.
        eprintln!("keep-alive connection answered by {answer}");
    }
    if keep {
        *kept = conn.ok();
    }
    Ok((answer, retried))
}

/// Sends `GET /` and reads the whole answer. Ok: (the body's Pod name, connection reusable).
fn request(
    conn: &mut Result<BufReader<TcpStream>, Failure>,
    keep_alive: bool,
) -> Result<(String, bool), Failure> {
    let conn = match conn {
        Ok(conn) => conn,
        Err(failure) => {
            return Err(Failure {
                kind: failure.kind,
                detail: std::mem::take(&mut failure.detail),
                before_answer: true,
                sent_to: failure.sent_to.take(),
            })
        }
    };
    let head = if keep_alive {
        "GET / HTTP/1.1\r\nHost: e2e\r\n\r\n"
    } else {
        "GET / HTTP/1.1\r\nHost: e2e\r\nConnection: close\r\n\r\n"
    };
    conn.get_mut()
        .write_all(head.as_bytes())
        .map_err(|e| Failure::io(&e, true))?;
    let mut status_line = String::new();
    match conn.read_line(&mut status_line) {
        Ok(0) => {
            return Err(Failure::io(
                &io::Error::new(io::ErrorKind::UnexpectedEof, "closed before an answer"),
                true,
            ))
        }
        Ok(_) => {}
        Err(e) => return Err(Failure::io(&e, true)),
    }
    let mut length = None;
    let mut close = !keep_alive;
    loop {
        let mut line = String::new();
        match conn.read_line(&mut line) {
            Ok(0) => return Err(Failure::io(&io::ErrorKind::UnexpectedEof.into(), false)),
            Ok(_) => {}
            Err(e) => return Err(Failure::io(&e, false)),
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close")
            {
                close = true;
            }
        }
    }
    let mut body = vec![0; length.unwrap_or(0)];
    conn.read_exact(&mut body)
        .map_err(|e| Failure::io(&e, false))?;
    let status = status_line.split_whitespace().nth(1).unwrap_or("?");
    if status != "200" {
        return Err(Failure {
            kind: if status.starts_with('5') {
                "status-5xx"
            } else {
                "status-other"
            },
            detail: status_line.trim_end().to_owned(),
            before_answer: false,
            sent_to: None,
        });
    }
    let body = String::from_utf8_lossy(&body);
    let pod = body
        .trim()
        .strip_prefix("ok ")
        .unwrap_or(body.trim())
        .to_owned();
    Ok((pod, !close))
}

#[cfg(test)]
mod tests {
    use super::dnat_destination;

    #[test]
    fn the_dnat_destination_is_the_reply_directions_source() {
        let entry = "conntrack: tcp      6 118 SYN_SENT src=198.18.0.2 dst=198.19.0.204 sport=58068 dport=80 [UNREPLIED] src=198.18.128.10 dst=198.18.128.1 sport=8080 dport=51181 mark=0 use=1";
        assert_eq!(dnat_destination(entry).as_deref(), Some("198.18.128.10"));
    }

    #[test]
    fn no_entry_or_several_entries_name_no_destination() {
        assert_eq!(dnat_destination("conntrack: "), None);
        assert_eq!(dnat_destination("conntrack not run: No such file"), None);
        let two = "conntrack: tcp 6 1 SYN_SENT src=a dst=b src=c dst=d | tcp 6 1 SYN_SENT src=a dst=b src=e dst=d";
        assert_eq!(dnat_destination(two), None);
    }
}
