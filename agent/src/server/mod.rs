//! The library's server: [`graceful_terminator`] registers the calling process and runs a
//! callback, once, when a `terminate` request arrives. Unlike K8sDeputy.jl, requests are
//! acknowledged, peers are checked, the callback does not block the accept loop, and the exit path
//! tells waiting preStop clients before the process goes (a PID 1 that exits first makes the
//! kernel kill the preStop and Kubernetes report `FailedPreStopHook`).

pub mod registration;

use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::socket::{shutdown, Shutdown};

use crate::protocol::{self, IpcDir, LineBuffer, Reply, Request};
use registration::{admit_peer, send_line, RegisterError, Registration};

/// How long one connection may take to send its request line.
pub const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an exiting server waits for told clients to disconnect.
pub const EXIT_DRAIN: Duration = Duration::from_secs(1);
/// Connections handled at once; more are refused with an error line.
const MAX_ACTIVE_CONNECTIONS: usize = 32;

type Callback = Box<dyn FnOnce() + Send + 'static>;

/// Registers the calling process and runs `callback` once on the first `terminate` request.
///
/// The callback should shut the app down and end with [`ExitHandle::exit`] (get one from
/// [`Terminator::exit_handle`]) so preStop clients are told before the process exits. The
/// entrypoint file is written unless the process runs under `deputy-agent run`.
pub fn graceful_terminator<F>(callback: F) -> Result<Terminator, RegisterError>
where
    F: FnOnce() + Send + 'static,
{
    Terminator::builder().register(callback)
}

/// Options for [`Terminator`].
#[derive(Debug, Default, Clone)]
pub struct TerminatorBuilder {
    dir: Option<IpcDir>,
    set_entrypoint: Option<bool>,
}

impl TerminatorBuilder {
    /// The IPC directory (default: `$DEPUTY_IPC_DIR`, else `/run`).
    pub fn ipc_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.dir = Some(IpcDir::new(dir));
        self
    }

    /// Whether to claim the entrypoint file. Default: yes, unless running under
    /// `deputy-agent run` (which stays the entrypoint and relays to us).
    pub fn set_entrypoint(mut self, yes: bool) -> Self {
        self.set_entrypoint = Some(yes);
        self
    }

    /// Binds the socket and starts serving requests on a background thread.
    pub fn register<F>(self, callback: F) -> Result<Terminator, RegisterError>
    where
        F: FnOnce() + Send + 'static,
    {
        let dir = self.dir.unwrap_or_else(IpcDir::from_env);
        let set_entrypoint = self
            .set_entrypoint
            .unwrap_or_else(|| protocol::supervisor_pid_from_env().is_none());
        let pid = std::process::id() as i32;
        let registration = Registration::bind(&dir, pid, set_entrypoint)?;
        let listener = registration
            .listener()
            .try_clone()
            .map_err(|source| RegisterError::Io {
                action: "duplicate listener of",
                path: registration.socket_path().to_owned(),
                source,
            })?;
        let shared = Arc::new(Shared {
            callback: Mutex::new(Some(Box::new(callback))),
            triggered: AtomicBool::new(false),
            waiters: Mutex::new(Waiters::default()),
            exit_code: AtomicI32::new(0),
            active: AtomicUsize::new(0),
        });
        let accept_thread = thread::Builder::new()
            .name("deputy-accept".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || accept_loop(&listener, &shared)
            })
            .map_err(|source| RegisterError::Io {
                action: "start the accept thread for",
                path: registration.socket_path().to_owned(),
                source,
            })?;
        Ok(Terminator {
            shared,
            registration: Some(registration),
            accept_thread: Some(accept_thread),
        })
    }
}

/// A live registration. Dropping it stops serving and removes the socket (and the entrypoint
/// file if this process wrote it and it still names this process).
#[derive(Debug)]
pub struct Terminator {
    shared: Arc<Shared>,
    registration: Option<Registration>,
    accept_thread: Option<JoinHandle<()>>,
}

impl Terminator {
    /// Options: IPC directory, entrypoint.
    pub fn builder() -> TerminatorBuilder {
        TerminatorBuilder::default()
    }

    /// The socket this process listens on.
    pub fn socket_path(&self) -> &Path {
        self.registration
            .as_ref()
            .map(Registration::socket_path)
            .expect("registration lives until drop")
    }

    /// Whether this registration claimed the entrypoint file.
    pub fn is_entrypoint(&self) -> bool {
        self.registration
            .as_ref()
            .is_some_and(Registration::is_entrypoint)
    }

    /// A cloneable handle that can end the process properly from any thread (the callback's).
    pub fn exit_handle(&self) -> ExitHandle {
        ExitHandle {
            shared: Arc::clone(&self.shared),
            socket_path: self.socket_path().to_owned(),
            entrypoint: self.is_entrypoint(),
        }
    }

    /// Tells waiting preStop clients that the process exits with `code` and waits (at most
    /// [`EXIT_DRAIN`]) for them to disconnect, without exiting: for apps that return from `main`.
    pub fn notify_exit(&self, code: i32) {
        self.shared.notify_exit(code);
    }

    /// [`notify_exit`](Self::notify_exit), removes the registration, then exits with `code`.
    pub fn exit(mut self, code: i32) -> ! {
        self.shared.notify_exit(code);
        self.stop();
        std::process::exit(code)
    }

    fn stop(&mut self) {
        if let Some(registration) = &self.registration {
            // Wakes the accept loop: accept(2) on a shut-down listener fails with EINVAL.
            let _ = shutdown(registration.listener().as_raw_fd(), Shutdown::Both);
        }
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        self.registration = None;
    }
}

impl Drop for Terminator {
    fn drop(&mut self) {
        self.stop();
        // Clients still waiting see end-of-stream and go on watching the process itself.
        self.shared.lock_waiters().streams.clear();
    }
}

/// Ends the process the way preStop clients need; see [`Terminator::exit_handle`].
#[derive(Debug, Clone)]
pub struct ExitHandle {
    shared: Arc<Shared>,
    socket_path: std::path::PathBuf,
    entrypoint: bool,
}

impl ExitHandle {
    /// Tells waiting clients `exited <code>`, waits for them (bounded), removes the socket and the
    /// entrypoint file, and exits with `code`.
    pub fn exit(&self, code: i32) -> ! {
        self.shared.notify_exit(code);
        let _ = std::fs::remove_file(&self.socket_path);
        if self.entrypoint {
            let dir = self.socket_path.parent().unwrap_or(Path::new("/"));
            let entrypoint = IpcDir::new(dir).entrypoint_path();
            let me = std::process::id().to_string();
            if std::fs::read_to_string(&entrypoint).is_ok_and(|t| t.trim() == me) {
                let _ = std::fs::remove_file(entrypoint);
            }
        }
        std::process::exit(code)
    }

    /// Whether a `terminate` request has been received.
    pub fn terminate_requested(&self) -> bool {
        self.shared.triggered.load(Ordering::SeqCst)
    }
}

struct Shared {
    callback: Mutex<Option<Callback>>,
    triggered: AtomicBool,
    waiters: Mutex<Waiters>,
    exit_code: AtomicI32,
    active: AtomicUsize,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("triggered", &self.triggered)
            .field("exit_code", &self.exit_code)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Waiters {
    streams: Vec<UnixStream>,
    exited: Option<i32>,
}

impl Shared {
    fn lock_waiters(&self) -> std::sync::MutexGuard<'_, Waiters> {
        self.waiters.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn trigger(&self) {
        if self.triggered.swap(true, Ordering::SeqCst) {
            return;
        }
        let callback = self
            .callback
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(callback) = callback {
            let spawned = thread::Builder::new()
                .name("deputy-terminate".into())
                .spawn(callback);
            if let Err(err) = spawned {
                eprintln!("deputy: cannot start the termination callback thread: {err}");
            }
        }
    }

    fn notify_exit(&self, code: i32) {
        self.exit_code.store(code, Ordering::SeqCst);
        let streams = {
            let mut waiters = self.lock_waiters();
            waiters.exited = Some(code);
            std::mem::take(&mut waiters.streams)
        };
        let line = Reply::Exited(code).to_string();
        let deadline = Instant::now() + EXIT_DRAIN;
        for stream in &streams {
            send_line(stream, &line);
        }
        for mut stream in streams {
            wait_for_disconnect(&mut stream, deadline);
        }
    }
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) =>
            {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
            // EINVAL: the listener was shut down by Terminator::stop.
            Err(_) => return,
        };
        if shared.active.fetch_add(1, Ordering::SeqCst) >= MAX_ACTIVE_CONNECTIONS {
            shared.active.fetch_sub(1, Ordering::SeqCst);
            send_line(&stream, Reply::Error("busy".into()).to_string());
            continue;
        }
        let shared_for_thread = Arc::clone(shared);
        let spawned = thread::Builder::new()
            .name("deputy-request".into())
            .spawn(move || {
                handle_connection(stream, &shared_for_thread);
                shared_for_thread.active.fetch_sub(1, Ordering::SeqCst);
            });
        if spawned.is_err() {
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn handle_connection(mut stream: UnixStream, shared: &Shared) {
    match admit_peer(&stream) {
        Ok(Ok(())) => {}
        Ok(Err(foreign)) => {
            eprintln!("deputy: {foreign}");
            return;
        }
        Err(err) => {
            eprintln!("deputy: cannot read peer credentials: {err}");
            return;
        }
    }
    let line = match read_request_line(&mut stream) {
        Ok(Some(line)) => line,
        Ok(None) => return,
        Err(why) => {
            send_line(&stream, Reply::Error(why.into()).to_string());
            return;
        }
    };
    match Request::parse(&line) {
        Ok(Request::Terminate) => {
            let exited = {
                let mut waiters = shared.lock_waiters();
                match waiters.exited {
                    Some(code) => Some(code),
                    None => {
                        send_line(&stream, Reply::Ok.to_string());
                        if let Ok(clone) = stream.try_clone() {
                            waiters.streams.push(clone);
                        }
                        None
                    }
                }
            };
            match exited {
                Some(code) => {
                    send_line(&stream, format!("{}{}", Reply::Ok, Reply::Exited(code)));
                }
                None => shared.trigger(),
            }
        }
        Err(unknown) => {
            eprintln!("deputy: {unknown}");
            send_line(&stream, Reply::Error("unknown request".into()).to_string());
        }
    }
}

/// One request line, read within [`REQUEST_READ_TIMEOUT`]; `Ok(None)` when the peer closed.
fn read_request_line(stream: &mut UnixStream) -> Result<Option<Vec<u8>>, &'static str> {
    let deadline = Instant::now() + REQUEST_READ_TIMEOUT;
    let mut lines = LineBuffer::default();
    let mut buf = [0u8; protocol::MAX_LINE];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err("timeout reading request");
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut buf) {
            Ok(0) => return Ok(None),
            Ok(n) => lines.push(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Err("timeout reading request")
            }
            Err(_) => return Ok(None),
        }
        match lines.next_line() {
            Ok(Some(line)) => return Ok(Some(line)),
            Ok(None) => {}
            Err(_) => return Err(crate::protocol::LineTooLong::REPLY),
        }
    }
}

fn wait_for_disconnect(stream: &mut UnixStream, deadline: Instant) {
    let mut buf = [0u8; 64];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
