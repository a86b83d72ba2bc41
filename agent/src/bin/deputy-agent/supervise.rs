//! `deputy-agent run -- CMD`: a correct PID 1 for the app, shaped like tini. One thread, one
//! loop: wait on a signalfd, the registration socket and its clients; reap every zombie; forward
//! signals; on a `terminate` request or SIGTERM, relay `terminate` to a registered descendant or
//! signal the child; once the child has exited, tell the preStop client `exited <code>` and
//! outlive it (so Kubernetes never kills the hook and reports `FailedPreStopHook`).
//!
//! Exit status: the child's, or 128+N when a signal N killed it; 127 when the command is not
//! found, 126 when it cannot be executed, 2 on a usage error.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use deputy_agent::process::descent_depth;
use deputy_agent::protocol::{IpcDir, LineBuffer, LineTooLong, Reply, Request, ENV_SUPERVISOR_PID};
use deputy_agent::{admit_peer, send_line, Registration, EXIT_DRAIN, REQUEST_READ_TIMEOUT};

use crate::cli::RunArgs;

/// Signals passed on to the child (SIGTERM only once termination has started).
const FORWARDED: [Signal; 7] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];
/// Clients served at once; more are refused.
const MAX_CLIENTS: usize = 64;

/// Runs the supervisor; returns the exit status.
pub fn run(args: RunArgs, dir: &IpcDir) -> i32 {
    match Supervisor::start(args, dir) {
        Ok(mut supervisor) => supervisor.serve(),
        Err(code) => code,
    }
}

fn log(message: impl std::fmt::Display) {
    eprintln!("deputy-agent run: {message}");
}

struct Client {
    stream: UnixStream,
    lines: LineBuffer,
    /// Until a request arrives, the time by which it must.
    read_deadline: Option<Instant>,
    /// Sent `terminate`; waits for `exited`.
    waiting: bool,
    /// Was told `exited`; we wait for it to disconnect.
    told: bool,
}

struct Supervisor {
    args: RunArgs,
    dir: IpcDir,
    me: i32,
    child: i32,
    signals: SignalFd,
    registration: Option<Registration>,
    clients: Vec<Client>,
    terminating: bool,
    kill_at: Option<Instant>,
    exit_status: Option<i32>,
    drain_until: Option<Instant>,
}

impl Supervisor {
    fn start(args: RunArgs, dir: &IpcDir) -> Result<Self, i32> {
        let mut mask = SigSet::empty();
        for signal in FORWARDED.iter().chain([&Signal::SIGCHLD]) {
            mask.add(*signal);
        }
        // Blocked before the child exists; the child gets an empty mask back (see below).
        if let Err(err) = mask.thread_block() {
            log(format_args!("sigprocmask failed: {err}"));
            return Err(1);
        }
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .map_err(|err| {
            log(format_args!("signalfd failed: {err}"));
            1
        })?;
        let me = std::process::id() as i32;
        if me != 1 {
            // Orphans of the app are reparented to us, so we reap them as PID 1 would.
            if let Err(err) = nix::sys::prctl::set_child_subreaper(true) {
                log(format_args!(
                    "prctl(PR_SET_CHILD_SUBREAPER) failed: {err}; orphans will not be reaped by us"
                ));
            }
        }
        let registration = match Registration::bind(dir, me, true) {
            Ok(registration) => {
                let _ = registration.listener().set_nonblocking(true);
                Some(registration)
            }
            Err(err) => {
                log(format_args!(
                    "running without a registration (preStop relay unavailable): {err}"
                ));
                None
            }
        };
        let mut command = Command::new(&args.command[0]);
        command.args(&args.command[1..]);
        command.env(ENV_SUPERVISOR_PID, me.to_string());
        deputy_agent::sys::reset_signals_in_child(&mut command);
        if args.process_group {
            command.process_group(0);
        }
        let child = match command.spawn() {
            Ok(child) => child.id() as i32,
            Err(err) => {
                let code = if err.kind() == io::ErrorKind::NotFound {
                    127
                } else {
                    126
                };
                log(format_args!(
                    "cannot start {:?}: {err}",
                    args.command[0].to_string_lossy()
                ));
                return Err(code);
            }
        };
        Ok(Self {
            args,
            dir: dir.clone(),
            me,
            child,
            signals,
            registration,
            clients: Vec::new(),
            terminating: false,
            kill_at: None,
            exit_status: None,
            drain_until: None,
        })
    }

    fn serve(&mut self) -> i32 {
        loop {
            if let Some(code) = self.exit_status {
                let told_left = self.clients.iter().any(|c| c.told);
                let drained = self.drain_until.is_some_and(|t| Instant::now() >= t);
                if !told_left || drained {
                    return code;
                }
            }
            self.wait_for_events();
            self.handle_signals();
            self.accept_clients();
            self.serve_clients();
            self.handle_deadlines();
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let client_deadlines = self.clients.iter().filter_map(|c| c.read_deadline);
        [self.kill_at, self.drain_until]
            .into_iter()
            .flatten()
            .chain(client_deadlines)
            .min()
    }

    fn wait_for_events(&mut self) {
        let timeout = match self.next_deadline() {
            None => PollTimeout::NONE,
            Some(at) => {
                let ms = at
                    .saturating_duration_since(Instant::now())
                    .as_micros()
                    .div_ceil(1000);
                PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = Vec::with_capacity(2 + self.clients.len());
        fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
        if let Some(registration) = &self.registration {
            fds.push(PollFd::new(
                registration.listener().as_fd(),
                PollFlags::POLLIN,
            ));
        }
        for client in &self.clients {
            fds.push(PollFd::new(client.stream.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => {
                log(format_args!("poll failed: {err}"));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    fn handle_signals(&mut self) {
        loop {
            let info = match self.signals.read_signal() {
                Ok(Some(info)) => info,
                Ok(None) => return,
                Err(Errno::EINTR) => continue,
                Err(err) => {
                    log(format_args!("reading the signalfd failed: {err}"));
                    return;
                }
            };
            let Ok(signal) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match signal {
                Signal::SIGCHLD => self.reap(),
                Signal::SIGTERM if !self.terminating => self.start_termination("SIGTERM"),
                other => self.forward(other),
            }
        }
    }

    /// Reaps every exited child, ours and orphans alike.
    fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == self.child => {
                    self.child_exited(code)
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) if pid.as_raw() == self.child => {
                    self.child_exited(128 + signal as i32)
                }
                Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => return,
                Ok(_) | Err(Errno::EINTR) => continue,
                Err(err) => {
                    log(format_args!("waitpid failed: {err}"));
                    return;
                }
            }
        }
    }

    fn child_exited(&mut self, code: i32) {
        self.exit_status = Some(code);
        self.kill_at = None;
        self.drain_until = Some(Instant::now() + EXIT_DRAIN);
        let line = Reply::Exited(code).to_string();
        for client in self.clients.iter_mut().filter(|c| c.waiting) {
            send_line(&client.stream, &line);
            client.told = true;
        }
        // Nothing more to relay: stop accepting, keep the told clients until they leave.
        if let Some(registration) = self.registration.take() {
            drop(registration);
        }
    }

    fn forward(&self, signal: Signal) {
        let target = if self.args.process_group {
            -self.child
        } else {
            self.child
        };
        if self.exit_status.is_none() {
            if let Err(err) = kill(Pid::from_raw(target), signal) {
                if err != Errno::ESRCH {
                    log(format_args!("cannot send {signal} to {target}: {err}"));
                }
            }
        }
    }

    fn start_termination(&mut self, reason: &str) {
        if self.terminating || self.exit_status.is_some() {
            return;
        }
        self.terminating = true;
        if let Some(grace) = self.args.grace {
            self.kill_at = Some(Instant::now() + grace);
        }
        match self.relay_to_descendant() {
            Some(pid) => log(format_args!(
                "{reason}: relayed terminate to registered descendant PID {pid}"
            )),
            None => {
                log(format_args!(
                    "{reason}: sending {} to the app (PID {})",
                    self.args.signal, self.child
                ));
                self.forward(self.args.signal);
            }
        }
    }

    /// Sends `terminate` to the registered descendant nearest to our child, if any. Its
    /// identity is checked like any client checks it (the listener must be that PID).
    fn relay_to_descendant(&self) -> Option<i32> {
        let mut candidates: Vec<(usize, i32, std::path::PathBuf)> = self
            .dir
            .registrations()
            .ok()?
            .into_iter()
            .filter(|(pid, _)| *pid != self.me)
            .filter_map(|(pid, path)| Some((descent_depth(pid, self.me)?, pid, path)))
            .collect();
        candidates.sort();
        candidates.into_iter().find_map(|(_, pid, path)| {
            let stream = UnixStream::connect(&path).ok()?;
            let cred = getsockopt(&stream, PeerCredentials).ok()?;
            if cred.pid() != pid {
                return None;
            }
            let _ = stream.set_write_timeout(Some(Duration::from_millis(500)));
            send_line(&stream, Request::Terminate.line());
            Some(pid)
        })
    }

    fn accept_clients(&mut self) {
        let Some(registration) = &self.registration else {
            return;
        };
        loop {
            let stream = match registration.listener().accept() {
                Ok((stream, _)) => stream,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return,
            };
            match admit_peer(&stream) {
                Ok(Ok(())) => {}
                Ok(Err(foreign)) => {
                    log(format_args!("{foreign}"));
                    continue;
                }
                Err(_) => continue,
            }
            if self.clients.len() >= MAX_CLIENTS {
                send_line(&stream, Reply::Error("busy".into()).to_string());
                continue;
            }
            let _ = stream.set_nonblocking(true);
            self.clients.push(Client {
                stream,
                lines: LineBuffer::default(),
                read_deadline: Some(Instant::now() + REQUEST_READ_TIMEOUT),
                waiting: false,
                told: false,
            });
        }
    }

    fn serve_clients(&mut self) {
        let mut index = 0;
        while index < self.clients.len() {
            match self.serve_client(index) {
                Keep::Yes => index += 1,
                Keep::No => {
                    self.clients.swap_remove(index);
                }
            }
        }
    }

    fn serve_client(&mut self, index: usize) -> Keep {
        let mut buf = [0u8; 64];
        let client = &mut self.clients[index];
        match client.stream.read(&mut buf) {
            Ok(0) => return Keep::No,
            Ok(n) if client.read_deadline.is_some() => client.lines.push(&buf[..n]),
            Ok(_) => return Keep::Yes, // chatter after the request: ignored
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => return Keep::Yes,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => return Keep::Yes,
            Err(_) => return Keep::No,
        }
        let line = match client.lines.next_line() {
            Ok(Some(line)) => line,
            Ok(None) => return Keep::Yes,
            Err(LineTooLong) => {
                send_line(
                    &client.stream,
                    Reply::Error(LineTooLong::REPLY.into()).to_string(),
                );
                return Keep::No;
            }
        };
        client.read_deadline = None;
        match Request::parse(&line) {
            Ok(Request::Terminate) => {
                client.waiting = true;
                send_line(&client.stream, Reply::Ok.to_string());
                if let Some(code) = self.exit_status {
                    send_line(&client.stream, Reply::Exited(code).to_string());
                    client.told = true;
                } else {
                    let peer = getsockopt(&client.stream, PeerCredentials)
                        .map(|c| c.pid())
                        .unwrap_or(0);
                    self.start_termination(&format!("terminate request from PID {peer}"));
                }
                Keep::Yes
            }
            Err(unknown) => {
                log(&unknown);
                send_line(
                    &client.stream,
                    Reply::Error("unknown request".into()).to_string(),
                );
                Keep::No
            }
        }
    }

    fn handle_deadlines(&mut self) {
        let now = Instant::now();
        if self.kill_at.is_some_and(|at| now >= at) {
            self.kill_at = None;
            log(format_args!(
                "grace period {:?} over: sending SIGKILL",
                self.args.grace.unwrap_or_default()
            ));
            self.forward(Signal::SIGKILL);
        }
        self.clients.retain(|client| match client.read_deadline {
            Some(deadline) if now >= deadline => {
                send_line(
                    &client.stream,
                    Reply::Error("timeout reading request".into()).to_string(),
                );
                false
            }
            _ => true,
        });
    }
}

enum Keep {
    Yes,
    No,
}
