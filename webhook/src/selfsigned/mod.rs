//! `serve --tls-secret`: the serving certificate without cert-manager. Every replica watches one
//! Secret (shipped empty, so that RBAC can name it) through the API server, serves the pair it
//! holds, fills and rotates it on schedule ([`plan`]) and keeps the webhook configuration's
//! `caBundle` equal to the Secret's `ca.crt`.
//!
//! One writer without a Lease: each write is a `replace` carrying the `resourceVersion` read, so
//! when two replicas decide the same step, the API server takes the first and answers `409
//! Conflict` to the second, which then sees the winner's Secret through its watch. The
//! configuration is patched only from a Secret just re-read from the API server (a watch may lag)
//! and with a JSON Patch `test` of the configuration's `resourceVersion`, so that a replica cannot
//! put back a bundle older than the one another replica has just patched in.
//!
//! The parts: [`config`] (the checked flags), [`plan`] (the schedule, pure) and [`pki`] (the
//! certificates); the loop and one look (`controller.rs`), the Secret's reads and writes
//! (`secret.rs`), and the `caBundle` sync and trust check (`bundle.rs`). The pair itself is served
//! through the same [`crate::tls::PairLoader`] as files are.

mod bundle;
pub mod config;
mod controller;
pub mod pki;
pub mod plan;
mod secret;

use std::sync::mpsc;

use kube::Client;

use crate::tls::Serving;
pub use config::TlsSecretConfig;
use controller::Controller;
pub use secret::{ROTATED_ANNOTATION, ROTATE_ANNOTATION};

/// Why the controller could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The async runtime of the controller's thread could not be built.
    #[error("cannot start the TLS Secret controller's runtime")]
    Runtime(#[source] std::io::Error),
    /// No API client configuration: neither an in-cluster service account nor a usable
    /// `$KUBECONFIG`.
    #[error("--tls-secret needs the Kubernetes API (in-cluster service account or KUBECONFIG)")]
    NoApi(#[source] kube::Error),
    /// The controller's thread could not be spawned.
    #[error("cannot start the TLS Secret controller's thread")]
    Thread(#[source] std::io::Error),
    /// The controller's thread ended before it said whether it connected.
    #[error("the TLS Secret controller stopped while connecting")]
    Stopped(#[source] mpsc::RecvError),
}

/// Loads the API client's configuration (in-cluster service account or `$KUBECONFIG`) and starts
/// the controller on its own thread. Without credentials it fails at start, visibly; an API server
/// that cannot be reached yet is retried with backoff (and the server stays unready until a pair
/// is loaded). Should the Secret's watch ever end, the process exits with status 1, for the
/// kubelet to restart it.
pub fn start(config: TlsSecretConfig, serving: Serving) -> Result<(), StartError> {
    // Its own thread and runtime: the caller may be inside one (actix's), where blocking on
    // another is refused; the connection's outcome comes back over a channel.
    let (connected_tx, connected_rx) = mpsc::channel::<Result<(), StartError>>();
    std::thread::Builder::new()
        .name("tls-secret".into())
        .spawn(move || {
            let connect = || -> Result<(tokio::runtime::Runtime, Client), StartError> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(StartError::Runtime)?;
                let client = runtime
                    .block_on(Client::try_default())
                    .map_err(StartError::NoApi)?;
                Ok((runtime, client))
            };
            let (runtime, client) = match connect() {
                Ok(connected) => connected,
                Err(err) => {
                    let _ = connected_tx.send(Err(err));
                    return;
                }
            };
            let _ = connected_tx.send(Ok(()));
            let controller = Controller::new(client, config, serving);
            let stopped = runtime.block_on(controller.run());
            tracing::error!("{stopped}; exiting");
            std::process::exit(1);
        })
        .map_err(StartError::Thread)?;
    connected_rx.recv().map_err(StartError::Stopped)?
}
