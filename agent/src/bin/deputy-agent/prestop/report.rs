//! Log lines of the preStop side. Kubernetes does not capture a preStop hook's output, so once
//! the target is verified its stdout (`/proc/<pid>/fd/1`) gets a copy and the lines show up in
//! `kubectl logs`. Lines written before that (the drain's) are kept and mirrored on attach.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

/// Lines kept for the mirror before it is attached; more are only on stderr.
const PENDING_MAX: usize = 32;

/// Writes each line to stderr and, once attached, to the target's stdout.
#[derive(Debug, Default)]
pub struct Reporter {
    mirror: Option<File>,
    pending: Vec<String>,
}

impl Reporter {
    /// Mirrors later lines to `pid`'s stdout. Opened append-only (a regular-file stdout must
    /// not be overwritten) and non-blocking (a full pipe must not stall the preStop).
    pub fn attach(&mut self, pid: i32) {
        self.mirror = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(format!("/proc/{pid}/fd/1"))
            .ok();
        if let Some(mirror) = &mut self.mirror {
            for line in self.pending.drain(..) {
                let _ = mirror.write_all(line.as_bytes());
            }
        }
    }

    /// Prints `deputy-agent terminate: <message>`.
    pub fn line(&mut self, message: impl std::fmt::Display) {
        let line = format!("deputy-agent terminate: {message}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        match &mut self.mirror {
            Some(mirror) => {
                let _ = mirror.write_all(line.as_bytes());
            }
            None if self.pending.len() < PENDING_MAX => self.pending.push(line),
            None => {}
        }
    }
}
