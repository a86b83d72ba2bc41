//! Which `deputy-webhook` executable the process tests run: cargo's build of this crate, or
//! another build named by `DEPUTY_WEBHOOK_UNDER_TEST=PATH`, run by the emulator
//! `DEPUTY_WEBHOOK_RUNNER` when set (`scripts/test-arm64.sh`: the aarch64 build under
//! qemu-user, which keeps the program's PID, so signals sent to the child reach it).

#![allow(dead_code)]

use std::process::Command;

/// A command that runs the `deputy-webhook` under test (arguments still to add).
pub fn webhook_command() -> Command {
    let binary = std::env::var_os("DEPUTY_WEBHOOK_UNDER_TEST")
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_deputy-webhook").into());
    match std::env::var_os("DEPUTY_WEBHOOK_RUNNER") {
        Some(runner) => {
            let mut command = Command::new(runner);
            command.arg(binary);
            command
        }
        None => Command::new(binary),
    }
}
