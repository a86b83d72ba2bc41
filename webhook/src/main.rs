//! `deputy-webhook` binary: parses arguments and runs a subcommand (see [`deputy_webhook::cli`]).
//!
//! glibc's malloc stays: mimalloc cut the server's CPU per review by a quarter, but tripled the
//! resident memory (20 MiB idle; 92 MiB against 49 MiB with eight concurrent 4 MiB reviews),
//! too close to a webhook's memory limit.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    deputy_webhook::cli::Args::parse_and_run()
}
