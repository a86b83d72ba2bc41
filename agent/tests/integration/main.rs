//! Integration tests of `deputy-agent` and the `deputy_agent` library: real processes, real
//! UNIX sockets, real signals, real namespaces and mounts. Tests that need root or a tool the
//! machine lacks skip loudly (and fail on CI, where everything must be present).

#[macro_use]
mod common;
mod drain;
mod examples;
mod health;
mod install;
mod library;
mod protocol_smoke;
mod run;
mod terminate;
