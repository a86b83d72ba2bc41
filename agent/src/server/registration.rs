//! The server side of a registration: the IPC directory, the entrypoint file and the listening
//! socket, created in K8sDeputy.jl's order (PID file, then socket) and removed when dropped.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::sys::socket::{getsockopt, send, sockopt::PeerCredentials, MsgFlags};
use nix::unistd::Uid;

use crate::protocol::{IpcDir, Reply, ENV_IPC_DIR};

/// Registering failed; every message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// The IPC directory is missing and cannot be created, or cannot be written.
    #[error(
        "cannot use IPC directory {dir}: {source}; mount a writable emptyDir there or set {ENV_IPC_DIR} to a writable directory",
        dir = dir.display()
    )]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The socket path is taken by something that is not a stale socket.
    #[error("cannot bind {path}: {why}", path = path.display())]
    PathInUse {
        /// The socket path.
        path: PathBuf,
        /// What is there.
        why: &'static str,
    },
    /// A file operation on the socket or entrypoint file failed.
    #[error("cannot {action} {path}", path = path.display())]
    Io {
        /// What we tried.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A bound registration socket (and the entrypoint file, when this process claimed it). Both are
/// removed on drop; the entrypoint file only if it still names this process.
#[derive(Debug)]
pub struct Registration {
    listener: UnixListener,
    pid: i32,
    socket_path: PathBuf,
    entrypoint_path: Option<PathBuf>,
}

impl Registration {
    /// Registers process `pid` (normally the caller) in `dir`: creates the directory (0700) when
    /// missing, writes the entrypoint file atomically when `set_entrypoint`, then binds
    /// `graceful-terminator.<pid>.socket` with mode 0600.
    pub fn bind(dir: &IpcDir, pid: i32, set_entrypoint: bool) -> Result<Self, RegisterError> {
        ensure_dir(dir.path())?;
        let entrypoint_path = if set_entrypoint {
            let path = dir.entrypoint_path();
            write_atomically(&path, format!("{pid}\n").as_bytes())?;
            Some(path)
        } else {
            None
        };
        let socket_path = dir.socket_path(pid);
        let listener = bind_socket(&socket_path).inspect_err(|_| {
            if let Some(path) = &entrypoint_path {
                remove_if_names(path, pid);
            }
        })?;
        Ok(Self {
            listener,
            pid,
            socket_path,
            entrypoint_path,
        })
    }

    /// The listening socket.
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// The socket's path.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Whether this registration wrote the entrypoint file.
    pub fn is_entrypoint(&self) -> bool {
        self.entrypoint_path.is_some()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.socket_path);
        if let Some(path) = &self.entrypoint_path {
            remove_if_names(path, self.pid);
        }
    }
}

/// Whether a connected peer may send requests: root, or the same effective UID as this process.
/// Returns the peer's UID and PID for logging.
pub fn peer_allowed(stream: &UnixStream) -> io::Result<(bool, u32, i32)> {
    let cred = getsockopt(stream, PeerCredentials)?;
    let uid = cred.uid();
    let allowed = uid == 0 || uid == Uid::effective().as_raw();
    Ok((allowed, uid, cred.pid()))
}

/// A connected peer that may not ask this process to terminate. Its `Display` is the log line
/// both servers (the library's and `deputy-agent run`'s) write, so the refusal reads the same.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForeignPeer {
    /// The peer's PID.
    pub pid: i32,
    /// The peer's UID: neither root nor ours.
    pub uid: u32,
}

impl std::fmt::Display for ForeignPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { pid, uid } = self;
        write!(f, "refused a request from PID {pid} running as UID {uid}: only root or our own UID may ask us to terminate")
    }
}

/// Admits a connected peer ([`peer_allowed`]), or answers it `error forbidden: wrong UID` and
/// returns who it was, for the caller to log.
pub fn admit_peer(stream: &UnixStream) -> io::Result<Result<(), ForeignPeer>> {
    let (allowed, uid, pid) = peer_allowed(stream)?;
    if allowed {
        return Ok(Ok(()));
    }
    send_line(
        stream,
        Reply::Error("forbidden: wrong UID".into()).to_string(),
    );
    Ok(Err(ForeignPeer { pid, uid }))
}

/// Sends bytes on a connection, ignoring a peer that already left (`EPIPE` is not an error
/// here) and never raising SIGPIPE in the host process.
pub fn send_line(stream: &UnixStream, line: impl AsRef<[u8]>) {
    use std::os::fd::AsRawFd;
    let _ = send(stream.as_raw_fd(), line.as_ref(), MsgFlags::MSG_NOSIGNAL);
}

fn ensure_dir(dir: &Path) -> Result<(), RegisterError> {
    let err = |source| RegisterError::Directory {
        dir: dir.to_owned(),
        source,
    };
    match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(err(io::Error::from(io::ErrorKind::NotADirectory))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(err)?,
        Err(e) => return Err(err(e)),
    }
    // access(2) answers for the real UID, which is what matters for a read-only mount too.
    nix::unistd::access(
        dir,
        nix::unistd::AccessFlags::W_OK | nix::unistd::AccessFlags::X_OK,
    )
    .map_err(|errno| err(io::Error::from(errno)))
}

/// Writes `path` through a temporary file in the same directory and a rename, so readers see
/// either the old content or the new, never a partial file.
pub fn write_atomically(path: &Path, content: &[u8]) -> Result<(), RegisterError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let io_err = |action, path: &Path| {
        let path = path.to_owned();
        move |source| RegisterError::Io {
            action,
            path,
            source,
        }
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    file.write_all(content).map_err(io_err("write", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(|source| {
        let _ = fs::remove_file(&tmp);
        RegisterError::Io {
            action: "rename into place",
            path: path.to_owned(),
            source,
        }
    })
}

fn bind_socket(path: &Path) -> Result<UnixListener, RegisterError> {
    remove_stale_socket(path)?;
    let listener = UnixListener::bind(path).map_err(|source| RegisterError::Io {
        action: "bind",
        path: path.to_owned(),
        source,
    })?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|source| {
        let _ = fs::remove_file(path);
        RegisterError::Io {
            action: "chmod 0600",
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(listener)
}

/// Removes what is at `path` only if it is a socket that nobody answers on (left by a previous
/// run of a restarted container on the same volume).
fn remove_stale_socket(path: &Path) -> Result<(), RegisterError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(RegisterError::Io {
                action: "inspect",
                path: path.to_owned(),
                source,
            })
        }
    };
    if !meta.file_type().is_socket() {
        return Err(RegisterError::PathInUse {
            path: path.to_owned(),
            why: "a file that is not a socket is there; remove it",
        });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(RegisterError::PathInUse {
            path: path.to_owned(),
            why: "another process is listening on it",
        }),
        Err(_) => fs::remove_file(path).map_err(|source| RegisterError::Io {
            action: "remove stale socket",
            path: path.to_owned(),
            source,
        }),
    }
}

fn remove_if_names(path: &Path, pid: i32) {
    if fs::read_to_string(path).is_ok_and(|text| text.trim() == pid.to_string()) {
        let _ = fs::remove_file(path);
    }
}
