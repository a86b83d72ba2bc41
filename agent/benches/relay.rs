//! `make bench-agent`: the preStop relay's latency against floors and the K8sDeputy.jl shim,
//! measured in one run on this machine, plus `run`'s memory and the binary's size. Prints a
//! Markdown table; not a test (no assertion on time).
//!
//! Each sample starts a fresh target process (this binary re-executed as a registered app whose
//! callback prints the wall-clock time it ran), then times one client against it:
//! - `deputy-agent terminate`: spawn → callback, and spawn → return (after the target exited);
//! - floor: spawn and wait of `deputy-agent --version` (a static no-op exec);
//! - floor: a raw connect + write of `terminate\n` from this process, → callback;
//! - peer: K8sDeputy.jl's bash shim approach, `printf 'terminate\n' | nc -N -U <socket>`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const ROLE_ENV: &str = "DEPUTY_BENCH_ROLE";
const SAMPLES: usize = 200;

fn main() {
    if std::env::var_os(ROLE_ENV).is_some() {
        return target_main();
    }
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` probes harness=false benches
    }
    let agent = release_agent();
    let ipc = tempfile::tempdir().expect("tempdir");
    let have_nc = Command::new("sh")
        .args(["-c", "command -v nc"])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());

    eprintln!(
        "bench-agent: {SAMPLES} samples per row; {}",
        agent.display()
    );
    let exec_floor = sample(|| {
        let t0 = Instant::now();
        let status = Command::new(&agent)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .expect("exec");
        assert!(status.success());
        t0.elapsed()
    });

    let mut raw_write = Vec::new();
    let raw_callback = sample(|| {
        let mut target = Target::start(ipc.path());
        let t0 = now();
        let started = Instant::now();
        let mut stream = UnixStream::connect(target.socket()).expect("connect");
        stream.write_all(b"terminate\n").expect("write");
        raw_write.push(started.elapsed());
        let at = target.callback_time();
        drop(stream);
        target.finish();
        at - t0
    });

    let mut relay_return = Vec::new();
    let relay_callback = sample(|| {
        let mut target = Target::start(ipc.path());
        let t0 = now();
        let started = Instant::now();
        let status = Command::new(&agent)
            .args([
                "terminate",
                "--pid",
                &target.pid().to_string(),
                "--timeout",
                "10s",
            ])
            .env("DEPUTY_IPC_DIR", ipc.path())
            .stderr(Stdio::null())
            .status()
            .expect("terminate");
        relay_return.push(started.elapsed());
        assert!(status.success(), "deputy-agent terminate failed");
        let at = target.callback_time();
        target.finish();
        at - t0
    });

    let mut shim_return = Vec::new();
    let shim_callback = have_nc.then(|| {
        sample(|| {
            let mut target = Target::start(ipc.path());
            let script = format!(
                "printf 'terminate\\n' | nc -N -U {}",
                target.socket().display()
            );
            let t0 = now();
            let started = Instant::now();
            let status = Command::new("sh")
                .args(["-c", &script])
                .stdout(Stdio::null())
                .status()
                .expect("nc");
            shim_return.push(started.elapsed());
            assert!(status.success(), "nc failed");
            let at = target.callback_time();
            target.finish();
            at - t0
        })
    });

    let (rss_kib, hwm_kib) = run_rss(&agent, ipc.path());
    let size = std::fs::metadata(&agent).expect("binary").len();

    let p50 = |v: &[Duration]| percentile(v, 50);
    let p99 = |v: &[Duration]| percentile(v, 99);
    println!();
    println!("| measurement ({SAMPLES} runs) | p50 | p99 |");
    println!("|---|---:|---:|");
    row("`deputy-agent terminate` → app callback", &relay_callback);
    row(
        "`deputy-agent terminate` → returns (app exited)",
        &relay_return,
    );
    row(
        "floor: exec of static no-op (`deputy-agent --version`)",
        &exec_floor,
    );
    row(
        "floor: raw connect+write from the bench process",
        &raw_write,
    );
    row("floor: raw connect+write → app callback", &raw_callback);
    match &shim_callback {
        Some(shim) => {
            row(
                "peer: K8sDeputy.jl shim (`sh` + `nc -U`) → app callback",
                shim,
            );
            row(
                "peer: K8sDeputy.jl shim → returns (socket closed at exit)",
                &shim_return,
            );
        }
        None => {
            println!("| peer: K8sDeputy.jl shim | SKIPPED: needs nc (Debian netcat-openbsd) | |")
        }
    }
    println!();
    let overhead = ratio(p50(&relay_callback), p50(&exec_floor));
    println!("| figure | value | goal |");
    println!("|---|---:|---|");
    println!("| relay → callback p50 / exec floor p50 | {overhead:.2}× | ≤ 1.5× |");
    println!(
        "| relay → callback p50 | {} | < 2 ms |",
        fmt(p50(&relay_callback))
    );
    if let Some(shim) = &shim_callback {
        println!(
            "| K8sDeputy.jl shim → callback p50 / relay p50 | {:.2}× | (peer) |",
            ratio(p50(shim), p50(&relay_callback))
        );
    }
    println!("| `deputy-agent run` RSS (peak) | {rss_kib} KiB ({hwm_kib} KiB) | ≤ 2048 KiB |");
    println!(
        "| release binary size | {size} bytes ({:.2} MiB) | ≤ 1.5 MiB |",
        size as f64 / (1024.0 * 1024.0)
    );
    let _ = p99;
}

fn row(name: &str, samples: &[Duration]) {
    println!(
        "| {name} | {} | {} |",
        fmt(percentile(samples, 50)),
        fmt(percentile(samples, 99))
    );
}

fn sample(mut one: impl FnMut() -> Duration) -> Vec<Duration> {
    (0..SAMPLES).map(|_| one()).collect()
}

fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// Wall-clock time: comparable across processes (unlike `Instant`).
fn now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock")
}

fn release_agent() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let agent = root.join("target/x86_64-unknown-linux-gnu/release/deputy-agent");
    assert!(
        agent.exists(),
        "{} is missing: run `cargo build --release -p deputy-agent` first (make bench-agent does)",
        agent.display()
    );
    agent
}

/// This binary re-executed as a registered app.
struct Target {
    child: Child,
    lines: std::io::Lines<BufReader<ChildStdout>>,
    socket: PathBuf,
}

impl Target {
    fn start(dir: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .env(ROLE_ENV, "target")
            .env("DEPUTY_IPC_DIR", dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn target");
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let ready = lines.next().expect("target output").expect("read");
        let socket = PathBuf::from(ready.strip_prefix("ready ").expect("ready line"));
        Self {
            child,
            lines,
            socket,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn socket(&self) -> &Path {
        &self.socket
    }

    /// The callback's timestamp; other lines (the preStop's mirrored log) are skipped.
    fn callback_time(&mut self) -> Duration {
        loop {
            let line = self.lines.next().expect("callback line").expect("read");
            if let Some(nanos) = line.strip_prefix("callback ") {
                return Duration::from_nanos(nanos.parse().expect("callback timestamp"));
            }
        }
    }

    fn finish(mut self) {
        let status = self.child.wait().expect("wait target");
        assert!(status.success());
    }
}

fn target_main() {
    let exit: Arc<OnceLock<deputy_agent::ExitHandle>> = Arc::new(OnceLock::new());
    let terminator = deputy_agent::Terminator::builder()
        .set_entrypoint(false)
        .register({
            let exit = Arc::clone(&exit);
            move || {
                let at = now().as_nanos();
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "callback {at}");
                let _ = out.flush();
                drop(out);
                if let Some(exit) = exit.get() {
                    exit.exit(0);
                }
                std::process::exit(0);
            }
        })
        .expect("register");
    let _ = exit.set(terminator.exit_handle());
    println!("ready {}", terminator.socket_path().display());
    let _ = std::io::stdout().flush();
    loop {
        std::thread::park();
    }
}

/// RSS and peak RSS (KiB) of `deputy-agent run -- sleep 30` once it has registered.
fn run_rss(agent: &Path, dir: &Path) -> (u64, u64) {
    let sub = dir.join("rss");
    std::fs::create_dir_all(&sub).expect("mkdir");
    let mut run = Command::new(agent)
        .args(["run", "--", "sleep", "30"])
        .env("DEPUTY_IPC_DIR", &sub)
        .spawn()
        .expect("spawn run");
    let entrypoint = sub.join("deputy-entrypoint.pid");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !entrypoint.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", run.id())).expect("status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let figures = (field("VmRSS:"), field("VmHWM:"));
    let _ = Command::new(agent)
        .args(["terminate", "--timeout", "5s"])
        .env("DEPUTY_IPC_DIR", &sub)
        .stderr(Stdio::null())
        .status();
    let _ = run.wait();
    figures
}
