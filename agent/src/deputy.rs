//! `Deputy`: K8sDeputy.jl's health-and-shutdown companion without its traps. Readiness turns
//! false again once shutting down (so endpoints drain), the handler timeout is exact, and a clean
//! shutdown exits 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use crate::server::registration::RegisterError;
use crate::server::{ExitHandle, Terminator};

/// Exit status when the shutdown handler returns an error or panics.
pub const EXIT_HANDLER_FAILED: i32 = 1;
/// Exit status when the shutdown handler outlives its timeout (as `timeout(1)` does).
pub const EXIT_HANDLER_TIMED_OUT: i32 = 124;
/// The handler timeout when none is configured, as in K8sDeputy.jl.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What a shutdown handler may report.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;
type Handler = Box<dyn FnOnce() -> Result<(), HandlerError> + Send + 'static>;

/// Health state plus the shutdown sequence of one app. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Deputy {
    state: Arc<State>,
}

struct State {
    ready: AtomicBool,
    shutting_down: AtomicBool,
    handler: Mutex<Option<Handler>>,
    timeout: Duration,
    clean_exit_code: i32,
    exit: Mutex<Option<ExitHandle>>,
}

impl std::fmt::Debug for Deputy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deputy")
            .field("ready", &self.is_ready())
            .field("shutting_down", &self.is_shutting_down())
            .field("timeout", &self.state.timeout)
            .finish_non_exhaustive()
    }
}

/// Options for [`Deputy`].
#[derive(Default)]
pub struct DeputyBuilder {
    handler: Option<Handler>,
    timeout: Option<Duration>,
    clean_exit_code: i32,
}

impl std::fmt::Debug for DeputyBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeputyBuilder")
            .field("has_handler", &self.handler.is_some())
            .field("timeout", &self.timeout)
            .field("clean_exit_code", &self.clean_exit_code)
            .finish()
    }
}

impl DeputyBuilder {
    /// Runs on shutdown, at most once, within the timeout.
    pub fn shutdown_handler<F>(mut self, handler: F) -> Self
    where
        F: FnOnce() -> Result<(), HandlerError> + Send + 'static,
    {
        self.handler = Some(Box::new(handler));
        self
    }

    /// How long the handler may run (default 5 s); enforced exactly.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Exit status after a clean shutdown (default 0).
    pub fn clean_exit_code(mut self, code: i32) -> Self {
        self.clean_exit_code = code;
        self
    }

    /// The deputy, not yet ready.
    pub fn build(self) -> Deputy {
        Deputy {
            state: Arc::new(State {
                ready: AtomicBool::new(false),
                shutting_down: AtomicBool::new(false),
                handler: Mutex::new(self.handler),
                timeout: self.timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
                clean_exit_code: self.clean_exit_code,
                exit: Mutex::new(None),
            }),
        }
    }
}

impl Deputy {
    /// Options: handler, timeout, clean exit status.
    pub fn builder() -> DeputyBuilder {
        DeputyBuilder::default()
    }

    /// Marks the app ready: `/health/ready` answers 200 (until shutdown starts).
    pub fn readied(&self) {
        self.state.ready.store(true, Ordering::SeqCst);
    }

    /// Ready and not shutting down.
    pub fn is_ready(&self) -> bool {
        self.state.ready.load(Ordering::SeqCst) && !self.is_shutting_down()
    }

    /// Alive: not shutting down.
    pub fn is_live(&self) -> bool {
        !self.is_shutting_down()
    }

    /// Whether shutdown has started.
    pub fn is_shutting_down(&self) -> bool {
        self.state.shutting_down.load(Ordering::SeqCst)
    }

    /// Registers this process for graceful termination: a `terminate` request runs
    /// [`shutdown`](Self::shutdown). Keep the returned guard alive.
    pub fn graceful_terminator(&self) -> Result<Terminator, RegisterError> {
        let deputy = self.clone();
        let terminator = Terminator::builder().register(move || deputy.shutdown())?;
        *self.lock_exit() = Some(terminator.exit_handle());
        Ok(terminator)
    }

    /// Shuts down: health turns unready and not live, the handler runs with its exact timeout,
    /// preStop clients are told, and the process exits — with the clean status, or
    /// [`EXIT_HANDLER_FAILED`] / [`EXIT_HANDLER_TIMED_OUT`]. Later callers block until then.
    pub fn shutdown(&self) -> ! {
        if self.state.shutting_down.swap(true, Ordering::SeqCst) {
            loop {
                thread::park();
            }
        }
        let code = self.run_handler();
        let exit = self.lock_exit().clone();
        match exit {
            Some(exit) => exit.exit(code),
            None => std::process::exit(code),
        }
    }

    fn run_handler(&self) -> i32 {
        let handler = self
            .state
            .handler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(handler) = handler else {
            return self.state.clean_exit_code;
        };
        let (done, result) = mpsc::channel();
        let spawned = thread::Builder::new()
            .name("deputy-shutdown".into())
            .spawn(move || {
                let _ = done.send(handler());
            });
        if let Err(err) = spawned {
            eprintln!("deputy: cannot start the shutdown handler: {err}");
            return EXIT_HANDLER_FAILED;
        }
        match result.recv_timeout(self.state.timeout) {
            Ok(Ok(())) => self.state.clean_exit_code,
            Ok(Err(err)) => {
                eprintln!("deputy: shutdown handler failed: {err}");
                EXIT_HANDLER_FAILED
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                eprintln!(
                    "deputy: shutdown handler still running after {:?}; exiting",
                    self.state.timeout
                );
                EXIT_HANDLER_TIMED_OUT
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                eprintln!("deputy: shutdown handler panicked");
                EXIT_HANDLER_FAILED
            }
        }
    }

    fn lock_exit(&self) -> std::sync::MutexGuard<'_, Option<ExitHandle>> {
        self.state
            .exit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}
