//! The wire protocol and file layout shared with K8sDeputy.jl: where registrations live, what a
//! request and a reply look like. No I/O beyond reading the small files of the IPC directory.
//!
//! ```text
//! <dir>/graceful-terminator.<pid>.socket   UNIX stream socket, one per registered process
//! <dir>/deputy-entrypoint.pid              "<pid>\n" of the entrypoint (readers fall back to
//! <dir>/julia-entrypoint.pid               K8sDeputy.jl's file)
//! client → server   "terminate\n"
//! server → client   "ok\n"            request accepted (K8sDeputy.jl servers send nothing)
//!                   "exited <code>\n" the target has exited (sent by supervising servers)
//!                   "error <why>\n"   request refused
//! ```

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Environment variable naming the IPC directory (honoured by K8sDeputy.jl too).
pub const ENV_IPC_DIR: &str = "DEPUTY_IPC_DIR";
/// The IPC directory when `DEPUTY_IPC_DIR` is unset, as in K8sDeputy.jl.
pub const DEFAULT_IPC_DIR: &str = "/run";
/// Set by `deputy-agent run` for its child: the supervisor stays the entrypoint, so a library app
/// running under it registers its socket without claiming the entrypoint file.
pub const ENV_SUPERVISOR_PID: &str = "DEPUTY_SUPERVISOR_PID";
/// The entrypoint file this project writes.
pub const ENTRYPOINT_FILE: &str = "deputy-entrypoint.pid";
/// K8sDeputy.jl's entrypoint file, read as a fallback so Julia apps work unchanged.
pub const JULIA_ENTRYPOINT_FILE: &str = "julia-entrypoint.pid";
/// A request or reply line is at most this many bytes, newline included.
pub const MAX_LINE: usize = 64;

const SOCKET_PREFIX: &str = "graceful-terminator.";
const SOCKET_SUFFIX: &str = ".socket";

/// The directory holding registrations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpcDir {
    path: PathBuf,
}

impl IpcDir {
    /// The directory named by `DEPUTY_IPC_DIR`, or `/run`.
    pub fn from_env() -> Self {
        match std::env::var_os(ENV_IPC_DIR) {
            Some(dir) if !dir.is_empty() => Self::new(dir),
            _ => Self::new(DEFAULT_IPC_DIR),
        }
    }

    /// A directory at an explicit path.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into() }
    }

    /// The directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where process `pid` listens when registered.
    pub fn socket_path(&self, pid: i32) -> PathBuf {
        self.path
            .join(format!("{SOCKET_PREFIX}{pid}{SOCKET_SUFFIX}"))
    }

    /// The entrypoint file this project writes.
    pub fn entrypoint_path(&self) -> PathBuf {
        self.path.join(ENTRYPOINT_FILE)
    }

    /// K8sDeputy.jl's entrypoint file.
    pub fn julia_entrypoint_path(&self) -> PathBuf {
        self.path.join(JULIA_ENTRYPOINT_FILE)
    }

    /// The entrypoint PID and the file it was read from: `deputy-entrypoint.pid` first, then
    /// `julia-entrypoint.pid`. `Ok(None)` when neither exists.
    pub fn read_entrypoint(&self) -> Result<Option<(i32, PathBuf)>, EntrypointFileError> {
        for path in [self.entrypoint_path(), self.julia_entrypoint_path()] {
            match fs::read_to_string(&path) {
                Ok(text) => {
                    let pid =
                        parse_pid(text.trim()).ok_or_else(|| EntrypointFileError::Invalid {
                            path: path.clone(),
                            content: text.chars().take(32).collect(),
                        })?;
                    return Ok(Some((pid, path)));
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(EntrypointFileError::Read { path, source }),
            }
        }
        Ok(None)
    }

    /// Every `graceful-terminator.<pid>.socket` in the directory, sorted by PID. Files that do not
    /// follow the naming scheme are ignored.
    pub fn registrations(&self) -> io::Result<Vec<(i32, PathBuf)>> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.path)? {
            let entry = entry?;
            let name = entry.file_name();
            if let Some(pid) = name.to_str().and_then(pid_from_socket_name) {
                found.push((pid, entry.path()));
            }
        }
        found.sort();
        Ok(found)
    }
}

/// The entrypoint file exists but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EntrypointFileError {
    /// Reading the file failed for a reason other than its absence.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file does not hold a positive decimal PID.
    #[error("{} does not hold a PID (found {content:?})", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The start of what it holds.
        content: String,
    },
}

/// The PID of the `deputy-agent run` supervising this process, from `DEPUTY_SUPERVISOR_PID`.
pub fn supervisor_pid_from_env() -> Option<i32> {
    std::env::var(ENV_SUPERVISOR_PID)
        .ok()
        .and_then(|v| parse_pid(v.trim()))
}

/// A positive decimal PID, or `None`.
pub fn parse_pid(text: &str) -> Option<i32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<i32>().ok().filter(|pid| *pid > 0)
}

fn pid_from_socket_name(name: &str) -> Option<i32> {
    parse_pid(
        name.strip_prefix(SOCKET_PREFIX)?
            .strip_suffix(SOCKET_SUFFIX)?,
    )
}

/// A request a client may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Ask the process to terminate gracefully.
    Terminate,
}

impl Request {
    /// The line as sent on the wire.
    pub fn line(self) -> &'static [u8] {
        match self {
            Request::Terminate => b"terminate\n",
        }
    }

    /// Parses one line (without its newline). Trailing `\r` and spaces are tolerated.
    pub fn parse(line: &[u8]) -> Result<Self, UnknownRequest> {
        match trim(line) {
            b"terminate" => Ok(Request::Terminate),
            other => Err(UnknownRequest(String::from_utf8_lossy(other).into_owned())),
        }
    }
}

/// A request line that is not part of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown request {0:?}")]
pub struct UnknownRequest(pub String);

/// A reply a server may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// The request was accepted.
    Ok,
    /// The target exited with this status (128+N when killed by signal N).
    Exited(i32),
    /// The request was refused.
    Error(String),
}

impl Reply {
    /// Parses one line (without its newline); `None` for a line that is not a reply.
    pub fn parse(line: &[u8]) -> Option<Self> {
        let line = std::str::from_utf8(trim(line)).ok()?;
        if line == "ok" {
            return Some(Reply::Ok);
        }
        if let Some(code) = line.strip_prefix("exited ") {
            return code.trim().parse().ok().map(Reply::Exited);
        }
        line.strip_prefix("error")
            .map(|why| Reply::Error(why.trim().to_owned()))
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Ok => writeln!(f, "ok"),
            Reply::Exited(code) => writeln!(f, "exited {code}"),
            Reply::Error(why) => writeln!(f, "error {why}"),
        }
    }
}

fn trim(mut line: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b' ' | b'\n'] = line {
        line = rest;
    }
    line
}

/// Accumulates bytes from a stream into lines of at most [`MAX_LINE`] bytes.
#[derive(Debug, Default)]
pub struct LineBuffer {
    buf: Vec<u8>,
}

impl LineBuffer {
    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line (without its newline), or `Err` when more than [`MAX_LINE`] bytes
    /// arrived without one.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, LineTooLong> {
        match self.buf.iter().position(|b| *b == b'\n') {
            Some(end) if end < MAX_LINE => {
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                Ok(Some(line))
            }
            Some(_) => Err(LineTooLong),
            None if self.buf.len() >= MAX_LINE => Err(LineTooLong),
            None => Ok(None),
        }
    }
}

/// More than [`MAX_LINE`] bytes arrived without a newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request line longer than {MAX_LINE} bytes")]
pub struct LineTooLong;

impl LineTooLong {
    /// What a server answers (`error request too long`): the same words from the library's
    /// server and from `deputy-agent run`'s, whatever this type's message says.
    pub const REPLY: &'static str = "request too long";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_names_round_trip_and_foreign_files_are_ignored() {
        let dir = IpcDir::new("/run");
        assert_eq!(
            dir.socket_path(42),
            PathBuf::from("/run/graceful-terminator.42.socket")
        );
        assert_eq!(
            pid_from_socket_name("graceful-terminator.42.socket"),
            Some(42)
        );
        assert_eq!(pid_from_socket_name("graceful-terminator.-1.socket"), None);
        assert_eq!(pid_from_socket_name("graceful-terminator.4x.socket"), None);
        assert_eq!(pid_from_socket_name("other.42.socket"), None);
    }

    #[test]
    fn requests_parse_leniently_but_only_terminate_is_known() {
        assert_eq!(Request::parse(b"terminate"), Ok(Request::Terminate));
        assert_eq!(Request::parse(b"terminate\r"), Ok(Request::Terminate));
        assert!(Request::parse(b"kill").is_err());
        assert!(Request::parse(b"").is_err());
    }

    #[test]
    fn replies_round_trip() {
        for reply in [
            Reply::Ok,
            Reply::Exited(143),
            Reply::Error("forbidden".into()),
        ] {
            let line = reply.to_string();
            assert_eq!(Reply::parse(line.as_bytes()), Some(reply));
        }
        assert_eq!(Reply::parse(b"exited x"), None);
        assert_eq!(Reply::parse(b"hello"), None);
    }

    #[test]
    fn line_buffer_splits_lines_and_bounds_their_length() {
        let mut lines = LineBuffer::default();
        lines.push(b"termi");
        assert_eq!(lines.next_line(), Ok(None));
        lines.push(b"nate\nok\n");
        assert_eq!(lines.next_line(), Ok(Some(b"terminate".to_vec())));
        assert_eq!(lines.next_line(), Ok(Some(b"ok".to_vec())));
        assert_eq!(lines.next_line(), Ok(None));
        lines.push(&[b'a'; MAX_LINE]);
        assert_eq!(lines.next_line(), Err(LineTooLong));
    }

    #[test]
    fn pids_must_be_positive_decimals() {
        assert_eq!(parse_pid("17"), Some(17));
        for bad in ["", "0", "-3", "+3", " 3", "3a", "99999999999"] {
            assert_eq!(parse_pid(bad), None, "{bad:?}");
        }
    }
}
