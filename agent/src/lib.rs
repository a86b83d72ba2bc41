//! Graceful termination for Kubernetes workloads, compatible with K8sDeputy.jl.
//!
//! A process registers with [`graceful_terminator`]: it listens on
//! `$DEPUTY_IPC_DIR/graceful-terminator.<pid>.socket`, and the Pod's `preStop` hook
//! (`deputy-agent terminate`, or [`graceful_terminate`]) asks it to terminate over that socket
//! and waits until it has exited. [`Deputy`] adds health state and a timed shutdown handler; with
//! the `health` feature it serves `/health/live` and `/health/ready`.
//!
//! ```no_run
//! let deputy = deputy_agent::Deputy::builder()
//!     .shutdown_handler(|| { /* flush, close */ Ok(()) })
//!     .build();
//! let _registration = deputy.graceful_terminator()?;
//! deputy.readied();
//! # Ok::<(), deputy_agent::RegisterError>(())
//! ```

pub mod client;
mod deputy;
#[cfg(feature = "health")]
pub mod health;
pub mod process;
pub mod protocol;
pub mod server;
pub mod sys;

pub use client::{graceful_terminate, ClientError, TerminateOutcome};
pub use deputy::{
    Deputy, DeputyBuilder, HandlerError, DEFAULT_SHUTDOWN_TIMEOUT, EXIT_HANDLER_FAILED,
    EXIT_HANDLER_TIMED_OUT,
};
pub use server::registration::{
    admit_peer, peer_allowed, send_line, write_atomically, ForeignPeer, RegisterError, Registration,
};
pub use server::{
    graceful_terminator, ExitHandle, Terminator, TerminatorBuilder, EXIT_DRAIN,
    REQUEST_READ_TIMEOUT,
};
