//! Helpers shared by the integration tests: locating binaries, spawning apps whose stdout is
//! collected line by line, polling with deadlines (never fixed sleeps), and loud skips.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Generous deadline for things that normally take milliseconds (a loaded 2-core CI box).
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Another build of the agent to test instead of cargo's: `DEPUTY_AGENT_UNDER_TEST=DIR` names a
/// directory with `deputy-agent` and `examples/deputy-app`, and `DEPUTY_AGENT_RUNNER` the
/// emulator that runs them (`scripts/test-arm64.sh`: the aarch64 builds under qemu-user).
fn under_test() -> Option<&'static Path> {
    static DIR: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("DEPUTY_AGENT_UNDER_TEST").map(PathBuf::from))
        .as_deref()
}

/// The emulator the binaries under test need (`DEPUTY_AGENT_RUNNER`), if any.
pub fn runner() -> Option<PathBuf> {
    std::env::var_os("DEPUTY_AGENT_RUNNER").map(PathBuf::from)
}

/// The agent executable itself (what `install` must copy byte for byte).
pub fn agent_binary() -> PathBuf {
    match under_test() {
        Some(dir) => dir.join("deputy-agent"),
        None => PathBuf::from(env!("CARGO_BIN_EXE_deputy-agent")),
    }
}

/// A program that runs the executable `binary` of the build under test: itself, or a wrapper
/// script in `<under test>/runner-wrappers/` that execs it under the runner (same PID, so PID 1
/// stays PID 1), for the tests that hand the path to other programs (unshare, nsenter, sh).
fn runnable(binary: &Path) -> PathBuf {
    let (Some(runner), Some(dir)) = (runner(), under_test()) else {
        return binary.to_path_buf();
    };
    let name = binary
        .strip_prefix(dir)
        .unwrap_or(binary)
        .to_string_lossy()
        .replace('/', "_");
    let wrappers = dir.join("runner-wrappers");
    std::fs::create_dir_all(&wrappers).expect("the wrappers' directory");
    let wrapper = wrappers.join(name);
    let script = format!(
        "#!/bin/sh\nexec {} {} \"$@\"\n",
        runner.display(),
        binary.display()
    );
    if std::fs::read_to_string(&wrapper).ok().as_deref() != Some(script.as_str()) {
        let tmp = wrappers.join(format!(
            ".{}.{}",
            wrapper.file_name().unwrap().to_string_lossy(),
            std::process::id()
        ));
        std::fs::write(&tmp, &script).expect("write a wrapper");
        std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("make it executable");
        std::fs::rename(&tmp, &wrapper).expect("put the wrapper in place");
    }
    wrapper
}

/// A command running the executable `binary`, a build of this crate (under the runner, if
/// there is one).
pub fn run_binary(binary: &Path) -> Command {
    match runner() {
        Some(runner) => {
            let mut command = Command::new(runner);
            command.arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

/// The `deputy-agent` binary under test, as a program to run.
pub fn agent() -> &'static str {
    static AGENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    AGENT.get_or_init(|| runnable(&agent_binary()).to_string_lossy().into_owned())
}

/// The example app (`cargo test` builds examples next to the test's `deps` directory).
pub fn example_app() -> PathBuf {
    let dir = match under_test() {
        Some(dir) => dir.to_path_buf(),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_path_buf()
        }
    };
    let app = dir.join("examples").join("deputy-app");
    assert!(
        app.exists(),
        "{} is missing: run the tests with `cargo test --all-features` (which builds examples)",
        app.display()
    );
    runnable(&app)
}

/// A fresh IPC directory, removed on drop.
pub fn ipc_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("deputy-ipc-")
        .tempdir()
        .expect("tempdir")
}

/// Polls `check` until it returns `Some` or `within` passes.
pub fn poll_until<T>(within: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether the tests run as root (needed for namespaces, mounts and UID switches).
pub fn is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

/// Skips the calling test loudly unless every requirement holds. On CI (`CI` set) a missing
/// part is a failure, not a skip: our CI machine must have everything.
#[macro_export]
macro_rules! require {
    ($($what:expr => $ok:expr),+ $(,)?) => {
        $(
            if !$ok {
                if std::env::var_os("CI").is_some() {
                    panic!("required part missing on CI: {}", $what);
                }
                eprintln!("SKIPPED {}: needs {}", module_path!(), $what);
                return;
            }
        )+
    };
}

/// Whether `program` is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A spawned process whose stdout lines are collected as they arrive.
pub struct Proc {
    pub child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Proc {
    /// Spawns `command` with stdout piped (stderr inherited, so failures show in test output).
    pub fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::piped());
        if command.get_program() != "sh" {
            command.stdin(Stdio::piped());
        }
        let mut child = command.spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let (lock, cond) = &*sink;
                lock.lock().unwrap().push(line);
                cond.notify_all();
            }
        });
        Self {
            child,
            lines,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for a line containing `needle`; panics with everything seen so far otherwise.
    pub fn wait_for_line(&self, needle: &str) -> String {
        let (lock, cond) = &*self.lines;
        let deadline = Instant::now() + DEADLINE;
        let mut lines = lock.lock().unwrap();
        loop {
            if let Some(line) = lines.iter().find(|l| l.contains(needle)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no line containing {needle:?}; got {lines:#?}"
            );
            lines = cond.wait_timeout(lines, left).unwrap().0;
        }
    }

    /// How many lines so far contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// All lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.0.lock().unwrap().clone()
    }

    /// Every line, once stdout has closed (call after the process exited).
    pub fn all_lines(&mut self) -> Vec<String> {
        if let Some(reader) = self.reader.take() {
            reader.join().expect("stdout reader");
        }
        self.lines()
    }

    /// Writes a line to the process's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("stdin piped");
        writeln!(stdin, "{line}").expect("write stdin");
    }

    /// Waits for exit within the deadline; returns the exit code (128+N for signal N).
    pub fn wait_exit(&mut self, within: Duration) -> i32 {
        let status = poll_until(within, || self.child.try_wait().unwrap()).unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!(
                "process {} did not exit within {within:?}; output {:#?}",
                self.pid(),
                self.lines()
            )
        });
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    }

    /// Whether it is still running (reaps it if not).
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The example app registered in `dir` with `args`, once it reports it registered.
pub fn start_app(dir: &Path, args: &[&str]) -> Proc {
    let mut command = Command::new(example_app());
    command
        .args(args)
        .env("DEPUTY_IPC_DIR", dir)
        .env("DEPUTY_HEALTH_CHECK_HOST", "127.0.0.1")
        .env("DEPUTY_HEALTH_CHECK_PORT", "0")
        .env_remove("DEPUTY_SUPERVISOR_PID");
    let app = Proc::spawn(command);
    app.wait_for_line("registered pid=");
    app
}

/// `deputy-agent <args>` with `DEPUTY_IPC_DIR=dir`, run to completion: (exit code, stderr).
pub fn agent_output(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(agent())
        .args(args)
        .env("DEPUTY_IPC_DIR", dir)
        .output()
        .expect("run deputy-agent");
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    (out.status.code().unwrap_or(-1), text)
}

/// `GET path` over a new connection; the status code (0 if none came back).
pub fn http_get(addr: &str, path: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).expect("connect to the health server");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The health server's address, as the example app prints it.
pub fn health_addr(app: &Proc) -> String {
    app.wait_for_line("health ")
        .rsplit(' ')
        .next()
        .unwrap()
        .to_owned()
}
