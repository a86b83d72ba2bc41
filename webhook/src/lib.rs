//! `deputy-webhook`: a mutating admission webhook that gives opted-in Pods graceful termination
//! (k8s-deputy), and the offline `inject` command. The mutation engine ([`mutate`]) is pure: Pod
//! JSON and configuration in, JSON Patch, warnings and a reason out. The server, the offline
//! command and the tests share it.

#![forbid(unsafe_code)]

pub mod admission;
pub mod cli;
pub mod config;
pub mod inject;
pub mod metrics;
pub mod mutate;
pub mod readiness;
pub mod selfsigned;
pub mod selftest;
pub mod server;
pub mod tls;
