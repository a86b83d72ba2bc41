//! An app using the `deputy_agent` library the way a service would: a `Deputy` with a shutdown
//! handler, registered for graceful termination, serving `/health/live` and `/health/ready`.
//! The tests and the demo image drive it; `--help` lists its knobs.
//!
//! ```text
//! DEPUTY_IPC_DIR=/tmp/ipc DEPUTY_HEALTH_CHECK_PORT=8081 cargo run --example deputy-app --features health
//! deputy-agent terminate            # in another shell, same DEPUTY_IPC_DIR
//! ```

use std::io::{BufRead, Write};
use std::time::Duration;

use deputy_agent::Deputy;

const USAGE: &str = "\
deputy-app [--handler-sleep <DURATION>] [--handler-fail] [--handler-crash]
           [--timeout <DURATION>] [--ready-on-stdin] [--ignore-terminate] [--no-entrypoint]
           [--allocate-on <FILE>]

Prints 'registered pid=<PID> socket=<PATH>', 'health <ADDR>' and 'ready' on stdout, then
waits. On terminate, runs the shutdown handler ('shutdown handler ran' / 'failed') and exits.
--ready-on-stdin waits for a line 'ready' on stdin before reporting ready; 'shutdown' on
stdin starts the shutdown itself. --ignore-terminate registers a callback that only logs.
--handler-crash aborts the process inside the handler (a crash, not an error). --allocate-on
removes FILE when it appears and then allocates memory until the kernel kills the process (the
OOM tests).";

fn main() {
    let mut handler_sleep = Duration::ZERO;
    let mut handler_fail = false;
    let mut handler_crash = false;
    let mut allocate_on = None;
    let mut timeout = deputy_agent::DEFAULT_SHUTDOWN_TIMEOUT;
    let mut ready_on_stdin = false;
    let mut ignore_terminate = false;
    let mut entrypoint = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut duration = || {
            let value = args.next().unwrap_or_else(|| usage_error(&arg));
            humantime::parse_duration(&value).unwrap_or_else(|_| usage_error(&arg))
        };
        match arg.as_str() {
            "--handler-sleep" => handler_sleep = duration(),
            "--timeout" => timeout = duration(),
            "--handler-fail" => handler_fail = true,
            "--handler-crash" => handler_crash = true,
            "--allocate-on" => allocate_on = Some(args.next().unwrap_or_else(|| usage_error(&arg))),
            "--ready-on-stdin" => ready_on_stdin = true,
            "--ignore-terminate" => ignore_terminate = true,
            "--no-entrypoint" => entrypoint = Some(false),
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            _ => usage_error(&arg),
        }
    }

    let deputy = Deputy::builder()
        .shutdown_timeout(timeout)
        .shutdown_handler(move || {
            say("shutdown handler started");
            std::thread::sleep(handler_sleep);
            if handler_crash {
                say("shutdown handler crashing (abort)");
                std::process::abort();
            }
            if handler_fail {
                say("shutdown handler failed");
                return Err("the database did not flush".into());
            }
            say("shutdown handler ran");
            Ok(())
        })
        .build();

    let registration = if ignore_terminate {
        let mut builder = deputy_agent::Terminator::builder();
        if let Some(yes) = entrypoint {
            builder = builder.set_entrypoint(yes);
        }
        builder.register(|| say("terminate request ignored"))
    } else if let Some(yes) = entrypoint {
        let deputy = deputy.clone();
        deputy_agent::Terminator::builder()
            .set_entrypoint(yes)
            .register(move || deputy.shutdown())
    } else {
        deputy.graceful_terminator()
    };
    let registration = registration.unwrap_or_else(|err| {
        eprintln!("deputy-app: {err}");
        std::process::exit(1)
    });
    say(format_args!(
        "registered pid={} socket={} entrypoint={}",
        std::process::id(),
        registration.socket_path().display(),
        registration.is_entrypoint()
    ));

    let health = deputy.serve_from_env().unwrap_or_else(|err| {
        eprintln!("deputy-app: {err}");
        std::process::exit(1)
    });
    say(format_args!("health {}", health.local_addr()));

    if let Some(file) = allocate_on {
        std::thread::spawn(move || allocate_when_present(std::path::Path::new(&file)));
    }
    if !ready_on_stdin {
        deputy.readied();
        say("ready");
    }
    // Serve stdin commands; without any, just wait for termination.
    for line in std::io::stdin().lock().lines() {
        match line.as_deref().map(str::trim) {
            Ok("ready") => {
                deputy.readied();
                say("ready");
            }
            Ok("shutdown") => deputy.shutdown(),
            Ok(_) => {}
            Err(_) => break,
        }
    }
    loop {
        std::thread::park();
    }
}

/// Waits for `file`, removes it (a restarted instance must not see it again) and then allocates
/// and touches memory, 1 MiB at a time, until the kernel's OOM killer ends the process.
fn allocate_when_present(file: &std::path::Path) {
    while !file.exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(file);
    say(format_args!(
        "{} appeared: allocating memory until killed",
        file.display()
    ));
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        // Written, not just reserved: untouched pages are never charged to the cgroup.
        held.push(vec![0xa5; 1 << 20]);
        if held.len().is_multiple_of(16) {
            say(format_args!("holding {} MiB", held.len()));
        }
    }
}

fn say(message: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "deputy-app: {message}");
    let _ = out.flush();
}

fn usage_error(arg: &str) -> ! {
    eprintln!("deputy-app: bad argument {arg:?}\n{USAGE}");
    std::process::exit(2)
}
