//! The HTTP health endpoints of a [`Deputy`](crate::Deputy) (feature `health`):
//! `/health/live` and `/health/ready`, 200 or 503 with an empty body, any method.
//!
//! Binds all interfaces by default: the kubelet probes the Pod IP from outside the container, so
//! K8sDeputy.jl's 127.0.0.1 default makes every probe fail.

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use crate::Deputy;

/// Environment variable with the health port (as in K8sDeputy.jl).
pub const ENV_HEALTH_PORT: &str = "DEPUTY_HEALTH_CHECK_PORT";
/// Environment variable with the address to bind (default all interfaces).
pub const ENV_HEALTH_HOST: &str = "DEPUTY_HEALTH_CHECK_HOST";
/// The port when none is configured.
pub const DEFAULT_HEALTH_PORT: u16 = 8081;

/// A running health server; stopped when dropped.
pub struct HealthServer {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HealthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HealthServer {
    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for HealthServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where to serve: `$DEPUTY_HEALTH_CHECK_HOST` (default `0.0.0.0`) and
/// `$DEPUTY_HEALTH_CHECK_PORT` (default 8081).
pub fn addr_from_env() -> io::Result<SocketAddr> {
    let host = std::env::var(ENV_HEALTH_HOST).unwrap_or_else(|_| "0.0.0.0".into());
    let port = match std::env::var(ENV_HEALTH_PORT) {
        Ok(port) => port.trim().parse::<u16>().map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{ENV_HEALTH_PORT}={port:?} is not a port number"),
            )
        })?,
        Err(_) => DEFAULT_HEALTH_PORT,
    };
    (host.as_str(), port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{ENV_HEALTH_HOST}={host:?} names no address"),
            )
        })
}

impl Deputy {
    /// Serves the health endpoints on `addr` from a background thread.
    pub fn serve(&self, addr: SocketAddr) -> io::Result<HealthServer> {
        let server = tiny_http::Server::http(addr).map_err(|e| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!("cannot serve health checks on {addr}: {e}"),
            )
        })?;
        let addr = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| io::Error::other("health server bound a non-IP address"))?;
        let server = Arc::new(server);
        let deputy = self.clone();
        let thread = thread::Builder::new().name("deputy-health".into()).spawn({
            let server = Arc::clone(&server);
            move || {
                for request in server.incoming_requests() {
                    let status = match request.url() {
                        "/health/live" => ok_or_unavailable(deputy.is_live()),
                        "/health/ready" => ok_or_unavailable(deputy.is_ready()),
                        _ => 404,
                    };
                    let _ = request.respond(tiny_http::Response::empty(status));
                }
            }
        })?;
        Ok(HealthServer {
            server,
            addr,
            thread: Some(thread),
        })
    }

    /// Serves on the address from the environment; see [`addr_from_env`].
    pub fn serve_from_env(&self) -> io::Result<HealthServer> {
        self.serve(addr_from_env()?)
    }
}

fn ok_or_unavailable(ok: bool) -> u16 {
    if ok {
        200
    } else {
        503
    }
}
