//! The client side: find the registered target, prove the socket belongs to it, ask it to
//! terminate, and wait until it has exited. Used by `deputy-agent terminate` (the preStop hook)
//! and by [`graceful_terminate`] for Rust programs.

use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::unistd::Uid;

use crate::process::ProcessWatch;
use crate::protocol::{EntrypointFileError, IpcDir, LineBuffer, Reply, Request};

/// How long a client retries a socket that is missing or refuses while its process registers.
pub const CONNECT_RETRY: Duration = Duration::from_millis(200);
/// Poll interval when no pidfd is available (K8sDeputy.jl polls every 100 ms).
const PROC_POLL: Duration = Duration::from_millis(10);

/// A client-side failure. "Nothing registered" is not one: see [`Lookup`].
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The entrypoint file exists but is unreadable or malformed.
    #[error(transparent)]
    EntrypointFile(#[from] EntrypointFileError),
    /// A system call failed.
    #[error("{action} failed")]
    Io {
        /// What we were doing.
        action: &'static str,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The target answered with an error line (e.g. it refused our UID).
    #[error("PID {pid} refused the request: {why}")]
    Refused {
        /// The target.
        pid: i32,
        /// Its reason.
        why: String,
    },
    /// The socket exists but its mode keeps this process out: it runs as another user than the
    /// app (the socket is 0600). Not "nothing registered": the app is there and was not asked.
    #[error(
        "cannot connect to {path}: permission denied (the socket belongs to {owner}, this process runs as UID {me}); run the relay as the app's user or as root",
        path = path.display()
    )]
    Forbidden {
        /// The socket.
        path: PathBuf,
        /// Its owner, as far as it can be seen.
        owner: String,
        /// Our effective UID.
        me: u32,
    },
    /// The target was still running when the deadline passed.
    #[error("PID {pid} was still running {elapsed:?} after the terminate request (timeout)")]
    Timeout {
        /// The target.
        pid: i32,
        /// Time since the request.
        elapsed: Duration,
    },
}

fn io_err(action: &'static str) -> impl FnOnce(io::Error) -> ClientError {
    move |source| ClientError::Io { action, source }
}

/// Where the target PID came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetSource {
    /// Given explicitly (`--pid`).
    Explicit,
    /// Read from this entrypoint file.
    File(PathBuf),
}

/// The result of a look-up that may legitimately find nothing to act on.
#[derive(Debug)]
pub enum Lookup<T> {
    /// Found, and safe to act on.
    Found(T),
    /// Nothing live is registered; the string says what was looked for.
    NotRegistered(String),
}

/// Finds the target PID: `pid` if given, else the entrypoint file (ours, then K8sDeputy.jl's).
pub fn resolve_target(
    dir: &IpcDir,
    pid: Option<i32>,
) -> Result<Lookup<(i32, TargetSource)>, ClientError> {
    if let Some(pid) = pid {
        return Ok(Lookup::Found((pid, TargetSource::Explicit)));
    }
    Ok(match dir.read_entrypoint()? {
        Some((pid, path)) => Lookup::Found((pid, TargetSource::File(path))),
        None => Lookup::NotRegistered(format!(
            "no entrypoint registered: neither {} nor {} exists",
            dir.entrypoint_path().display(),
            dir.julia_entrypoint_path().display()
        )),
    })
}

/// A connection whose listener is proven to be the target process.
#[derive(Debug)]
pub struct Connection {
    stream: UnixStream,
    watch: ProcessWatch,
    peer_uid: u32,
}

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A supervising server reported the target's exit status.
    Reported(i32),
    /// The target process was observed gone (or a zombie).
    Observed,
}

/// What came back for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ack {
    /// The server answered `ok`.
    Ok,
    /// The server sent nothing yet (K8sDeputy.jl servers never answer).
    Silent,
}

impl Connection {
    /// Connects to `pid`'s socket in `dir` and proves who listens: a pidfd is opened first, the
    /// listener's `SO_PEERCRED` PID must be `pid`, its UID acceptable, and the pidfd must still be
    /// alive afterwards — so a stale file and a reused PID can never make us act on an unrelated
    /// process. Missing or refusing sockets are retried for `retry` (registration in progress).
    pub fn open(dir: &IpcDir, pid: i32, retry: Duration) -> Result<Lookup<Self>, ClientError> {
        let Some(watch) = ProcessWatch::open(pid).map_err(io_err("pidfd_open"))? else {
            return Ok(Lookup::NotRegistered(format!("PID {pid} is not running")));
        };
        let path = dir.socket_path(pid);
        let started = Instant::now();
        let stream = loop {
            match UnixStream::connect(&path) {
                Ok(stream) => break stream,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                    ) && started.elapsed() < retry
                        && !watch.has_exited() =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(err) if err.kind() == io::ErrorKind::PermissionDenied => {
                    use std::os::unix::fs::MetadataExt;
                    let owner = match std::fs::metadata(&path) {
                        Ok(meta) => format!("UID {}", meta.uid()),
                        Err(_) => "a user whose directory we cannot search".to_owned(),
                    };
                    return Err(ClientError::Forbidden {
                        path,
                        owner,
                        me: Uid::effective().as_raw(),
                    });
                }
                Err(err) => {
                    return Ok(Lookup::NotRegistered(format!(
                        "PID {pid} is not registered: cannot connect to {}: {err}",
                        path.display()
                    )))
                }
            }
        };
        let cred = getsockopt(&stream, PeerCredentials).map_err(|e| ClientError::Io {
            action: "getsockopt(SO_PEERCRED)",
            source: e.into(),
        })?;
        if cred.pid() != pid {
            return Ok(Lookup::NotRegistered(format!(
                "{} is served by PID {}, not PID {pid}: stale registration, not acting on it",
                path.display(),
                cred.pid()
            )));
        }
        let me = Uid::effective().as_raw();
        if !(me == 0 || cred.uid() == me || cred.uid() == 0) {
            return Ok(Lookup::NotRegistered(format!(
                "{} is served by UID {}, and we run as UID {me}: not acting on it",
                path.display(),
                cred.uid()
            )));
        }
        if watch.has_exited() {
            return Ok(Lookup::NotRegistered(format!(
                "PID {pid} exited while we connected"
            )));
        }
        Ok(Lookup::Found(Self {
            stream,
            watch,
            peer_uid: cred.uid(),
        }))
    }

    /// The verified target PID.
    pub fn pid(&self) -> i32 {
        self.watch.pid()
    }

    /// The target's UID.
    pub fn peer_uid(&self) -> u32 {
        self.peer_uid
    }

    /// Sends `terminate`. A peer that already closed is fine (it may be exiting).
    pub fn send_terminate(&mut self) -> Result<(), ClientError> {
        match self.stream.write_all(Request::Terminate.line()) {
            Err(err) if err.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other.map_err(io_err("write terminate request")),
        }
    }

    /// Waits up to `within` for the server's first answer: `ok` (or `exited`, which implies it),
    /// an error, or silence (closing without a word counts as silence).
    pub fn read_ack(&mut self, within: Duration) -> Result<Ack, ClientError> {
        let deadline = Instant::now() + within;
        let mut lines = LineBuffer::default();
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() || !wait_readable(&self.stream, remaining)? {
                return Ok(Ack::Silent);
            }
            match read_lines(&mut self.stream, &mut lines)? {
                None => return Ok(Ack::Silent),
                Some(replies) => match replies.into_iter().next() {
                    Some(Reply::Ok | Reply::Exited(_)) => return Ok(Ack::Ok),
                    Some(Reply::Error(why)) => {
                        return Err(ClientError::Refused {
                            pid: self.pid(),
                            why,
                        })
                    }
                    None => {}
                },
            }
        }
    }

    /// Waits until the target has exited: an `exited` line from a supervising server ends the wait
    /// at once (the server's own PID is not awaited), otherwise the process itself is watched.
    /// `acked` is set when the server answers `ok`. Keep the connection open until this process
    /// exits: a supervising PID 1 waits for that before exiting itself, and when a namespace's
    /// PID 1 exits the kernel kills every other process in it, this one included.
    pub fn wait_for_exit(
        &mut self,
        timeout: Option<Duration>,
        acked: &mut bool,
    ) -> Result<Exit, ClientError> {
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let mut lines = LineBuffer::default();
        let mut socket_open = true;
        loop {
            if self.watch.has_exited() {
                return Ok(Exit::Observed);
            }
            let remaining = match deadline {
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return Err(ClientError::Timeout {
                            pid: self.pid(),
                            elapsed: started.elapsed(),
                        });
                    }
                    Some(left)
                }
                None => None,
            };
            let slice = match (self.watch.pollable(), remaining) {
                (Some(_), left) => left,
                (None, Some(left)) => Some(left.min(PROC_POLL)),
                (None, None) => Some(PROC_POLL),
            };
            let socket_ready = {
                let mut fds = Vec::with_capacity(2);
                if socket_open {
                    fds.push(PollFd::new(self.stream.as_fd(), PollFlags::POLLIN));
                }
                if let Some(fd) = self.watch.pollable() {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                }
                poll_until(&mut fds, slice)?;
                socket_open && fds[0].any().unwrap_or(false)
            };
            if !socket_ready {
                continue;
            }
            match read_lines(&mut self.stream, &mut lines)? {
                None => socket_open = false,
                Some(replies) => {
                    for reply in replies {
                        match reply {
                            Reply::Ok => *acked = true,
                            Reply::Exited(code) => return Ok(Exit::Reported(code)),
                            Reply::Error(why) => {
                                return Err(ClientError::Refused {
                                    pid: self.pid(),
                                    why,
                                })
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Reads what is available; `None` at end of stream. Unparseable lines are skipped.
fn read_lines(
    stream: &mut UnixStream,
    lines: &mut LineBuffer,
) -> Result<Option<Vec<Reply>>, ClientError> {
    let mut buf = [0u8; 128];
    let n = match stream.read(&mut buf) {
        Ok(0) => return Ok(None),
        Ok(n) => n,
        Err(err) if err.kind() == io::ErrorKind::ConnectionReset => return Ok(None),
        Err(err) if err.kind() == io::ErrorKind::Interrupted => 0,
        Err(err) => return Err(io_err("read reply")(err)),
    };
    lines.push(&buf[..n]);
    let mut replies = Vec::new();
    while let Some(line) = lines.next_line().map_err(|e| ClientError::Io {
        action: "read reply",
        source: io::Error::new(io::ErrorKind::InvalidData, e),
    })? {
        replies.extend(Reply::parse(&line));
    }
    Ok(Some(replies))
}

fn wait_readable(stream: &UnixStream, within: Duration) -> Result<bool, ClientError> {
    let mut fds = [PollFd::new(stream.as_fd(), PollFlags::POLLIN)];
    poll_until(&mut fds, Some(within))?;
    Ok(fds[0].any().unwrap_or(false))
}

/// `poll` with a `Duration` (rounded up to whole milliseconds); EINTR counts as a timeout.
fn poll_until(fds: &mut [PollFd], within: Option<Duration>) -> Result<(), ClientError> {
    let timeout = match within {
        None => PollTimeout::NONE,
        Some(d) => {
            let ms = d.as_micros().div_ceil(1000);
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    };
    match poll(fds, timeout) {
        Ok(_) | Err(nix::errno::Errno::EINTR) => Ok(()),
        Err(err) => Err(io_err("poll")(err.into())),
    }
}

/// What [`graceful_terminate`] achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TerminateOutcome {
    /// Nothing live was registered; the string says what was looked for.
    NotRegistered(String),
    /// The request was delivered and, with `wait`, the target has exited.
    Terminated {
        /// The target PID.
        pid: i32,
        /// How the exit was learnt, when waited for.
        exit: Option<Exit>,
    },
}

/// Asks the registered process to terminate, like K8sDeputy.jl's `graceful_terminate`: `pid`
/// defaults to the entrypoint of `$DEPUTY_IPC_DIR`; with `wait`, returns once it has exited.
pub fn graceful_terminate(pid: Option<i32>, wait: bool) -> Result<TerminateOutcome, ClientError> {
    let dir = IpcDir::from_env();
    let pid = match resolve_target(&dir, pid)? {
        Lookup::Found((pid, _)) => pid,
        Lookup::NotRegistered(why) => return Ok(TerminateOutcome::NotRegistered(why)),
    };
    let mut conn = match Connection::open(&dir, pid, CONNECT_RETRY)? {
        Lookup::Found(conn) => conn,
        Lookup::NotRegistered(why) => return Ok(TerminateOutcome::NotRegistered(why)),
    };
    conn.send_terminate()?;
    let exit = if wait {
        let mut acked = false;
        Some(conn.wait_for_exit(None, &mut acked)?)
    } else {
        conn.read_ack(Duration::from_secs(1))?;
        None
    };
    Ok(TerminateOutcome::Terminated { pid, exit })
}
