//! Watching another process: has it exited yet? With a pidfd where the kernel allows one, else
//! by reading `/proc/<pid>/stat` (a zombie, or a PID now used by a process started later, counts
//! as exited).

use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use crate::sys;

/// What `/proc/<pid>/stat` says about a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// One-letter state (`R`, `S`, `Z`, ...).
    pub state: char,
    /// Parent PID.
    pub ppid: i32,
    /// Start time in clock ticks since boot: with the PID, identifies one process.
    pub start_time: u64,
}

impl ProcStat {
    /// Reads the stat line of `pid`; `None` when no such process exists (or it cannot be read).
    pub fn read(pid: i32) -> Option<Self> {
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse(&text)
    }

    /// Parses a stat line. The command name may hold spaces and parentheses, so fields are
    /// counted from the last `)`.
    pub fn parse(text: &str) -> Option<Self> {
        let after_comm = &text[text.rfind(')')? + 1..];
        let mut fields = after_comm.split_ascii_whitespace();
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        // Fields 3..=21 follow ppid; start time is field 22 of the whole line.
        let start_time = fields.nth(17)?.parse().ok()?;
        Some(Self {
            state,
            ppid,
            start_time,
        })
    }

    /// A zombie or dead process has exited, whatever its parent does next.
    pub fn is_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// A handle on one process that tells when it has exited.
#[derive(Debug)]
pub enum ProcessWatch {
    /// A pidfd: exact, and pollable together with a socket.
    Pidfd {
        /// The process.
        pid: i32,
        /// Its pidfd.
        fd: OwnedFd,
    },
    /// `pidfd_open` was refused (old kernel, or a seccomp profile): poll `/proc`.
    Proc {
        /// The process.
        pid: i32,
        /// Its start time, so a reused PID reads as exited.
        start_time: u64,
    },
}

impl ProcessWatch {
    /// Starts watching `pid`; `Ok(None)` when no such process is running.
    pub fn open(pid: i32) -> io::Result<Option<Self>> {
        match sys::pidfd_open(pid) {
            Ok(fd) => {
                let watch = Self::Pidfd { pid, fd };
                Ok((!watch.has_exited()).then_some(watch))
            }
            Err(err) if err.raw_os_error() == Some(libc::ESRCH) => Ok(None),
            Err(err)
                if matches!(
                    err.raw_os_error(),
                    Some(libc::ENOSYS | libc::EPERM | libc::EINVAL)
                ) =>
            {
                Ok(Self::open_proc(pid))
            }
            Err(err) => Err(err),
        }
    }

    /// Watches through `/proc` only (what `open` falls back to; public so tests cover it).
    pub fn open_proc(pid: i32) -> Option<Self> {
        ProcStat::read(pid)
            .filter(|stat| !stat.is_exited())
            .map(|stat| Self::Proc {
                pid,
                start_time: stat.start_time,
            })
    }

    /// The watched PID.
    pub fn pid(&self) -> i32 {
        match self {
            Self::Pidfd { pid, .. } | Self::Proc { pid, .. } => *pid,
        }
    }

    /// The descriptor to poll for exit, when there is one.
    pub fn pollable(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Self::Pidfd { fd, .. } => Some(fd.as_fd()),
            Self::Proc { .. } => None,
        }
    }

    /// Whether the process has exited (or, for `/proc` watches, its PID now names another
    /// process).
    pub fn has_exited(&self) -> bool {
        match self {
            Self::Pidfd { fd, .. } => {
                let mut fds = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            }
            Self::Proc { pid, start_time } => match ProcStat::read(*pid) {
                Some(stat) => stat.is_exited() || stat.start_time != *start_time,
                None => true,
            },
        }
    }
}

/// Whether `pid` descends from `ancestor`, and how many generations below it (1 = child).
pub fn descent_depth(pid: i32, ancestor: i32) -> Option<usize> {
    let mut current = pid;
    for depth in 1..=64 {
        let parent = ProcStat::read(current)?.ppid;
        if parent == ancestor {
            return Some(depth);
        }
        if parent <= 1 {
            return None;
        }
        current = parent;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let line = "4242 (my (odd) app) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 200 18446744073709551615";
        let stat = ProcStat::parse(line).unwrap();
        assert_eq!(
            stat,
            ProcStat {
                state: 'S',
                ppid: 17,
                start_time: 987654
            }
        );
        assert!(!stat.is_exited());
        assert!(ProcStat::parse("garbage").is_none());
    }

    #[test]
    fn a_zombie_counts_as_exited_though_kill_0_still_finds_it() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // Not reaped: it stays a zombie until we wait for it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !ProcStat::read(pid).unwrap().is_exited() {
            assert!(std::time::Instant::now() < deadline, "child never exited");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        // K8sDeputy.jl's kill(pid, 0) loop would wait on forever (until the parent reaps).
        assert!(nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
        assert!(
            ProcessWatch::open(pid).unwrap().is_none(),
            "pidfd sees the zombie as exited"
        );
        assert!(ProcessWatch::open_proc(pid).is_none(), "/proc fallback too");
        let mut child = child;
        child.wait().unwrap();
    }

    #[test]
    fn our_own_process_is_watched_alive_and_descends_from_our_parent() {
        let me = std::process::id() as i32;
        let watch = ProcessWatch::open(me).unwrap().expect("we are running");
        assert!(!watch.has_exited());
        let proc_watch = ProcessWatch::open_proc(me).unwrap();
        assert!(!proc_watch.has_exited());
        let parent = ProcStat::read(me).unwrap().ppid;
        assert_eq!(descent_depth(me, parent), Some(1));
        assert_eq!(descent_depth(parent, me), None);
    }
}
