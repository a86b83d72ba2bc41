//! Log lines of the preStop side. Kubernetes does not capture a preStop hook's output, so once
//! the target is verified its stdout (`/proc/<pid>/fd/1`) gets a copy and the lines show up in
//! `kubectl logs`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

/// Writes each line to stderr and, once attached, to the target's stdout.
#[derive(Debug, Default)]
pub struct Reporter {
    mirror: Option<File>,
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
    }

    /// Prints `deputy-agent terminate: <message>`.
    pub fn line(&mut self, message: impl std::fmt::Display) {
        let line = format!("deputy-agent terminate: {message}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
        if let Some(mirror) = &mut self.mirror {
            let _ = mirror.write_all(line.as_bytes());
        }
    }
}
