//! `deputy-agent terminate`: the preStop hook. Drains first if asked (the app keeps serving while
//! traffic moves away), runs a chained handler, then finds the registered target, asks it to
//! terminate and waits for it to exit. Exit 0 when it exited or when nothing is registered
//! (Kubernetes then sends SIGTERM as usual); 1 on timeout or refusal.

pub mod drain;
mod report;

use std::time::{Duration, Instant};

use deputy_agent::client::{self, Ack, ClientError, Connection, Exit, Lookup, TargetSource};
use deputy_agent::protocol::IpcDir;

use crate::cli::TerminateArgs;
use report::Reporter;

/// How long `--no-wait` waits for an acknowledgement before assuming a K8sDeputy.jl server.
const NO_WAIT_ACK: Duration = Duration::from_secs(1);

/// Runs the command; returns the process exit status.
pub fn terminate(dir: &IpcDir, args: &TerminateArgs) -> i32 {
    let started = Instant::now();
    let mut report = Reporter::default();
    if let Some(plan) = args.drain {
        let mut counter = drain::PassiveOpens::new();
        let outcome = drain::drain(plan, started, args.timeout, &mut counter, &mut |line| {
            report.line(line)
        });
        report.line(outcome);
    }
    match relay(dir, args, started, &mut report) {
        Ok(()) => 0,
        Err(err) => {
            report.line(format_args!("error: {}", chain(&err)));
            if let ClientError::Timeout { pid, .. } = err {
                report.line(format_args!(
                    "giving up on PID {pid}: Kubernetes sends SIGTERM next and SIGKILL at the end of \
                     the grace period; make the app's termination callback end the process, or give \
                     it longer (the k8s-deputy.io/terminate-timeout annotation, \
                     terminationGracePeriodSeconds)"
                ));
            }
            1
        }
    }
}

/// Runs a chained `exec` preStop handler within the deadline. Its failure is reported but does
/// not stop the relay: the app must still be asked to terminate.
fn run_first(args: &TerminateArgs, started: Instant, report: &mut Reporter) {
    let Some((program, rest)) = args.first_command.split_first() else {
        return;
    };
    let name = program.to_string_lossy().into_owned();
    let mut child = match std::process::Command::new(program).args(rest).spawn() {
        Ok(child) => child,
        Err(err) => {
            report.line(format_args!(
                "cannot run the chained preStop command {name:?}: {err}"
            ));
            return;
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return,
            Ok(Some(status)) => {
                report.line(format_args!(
                    "the chained preStop command {name:?} failed ({status}); relaying anyway"
                ));
                return;
            }
            Ok(None) if remaining(args.timeout, started).is_zero() => {
                let _ = child.kill();
                let _ = child.wait();
                report.line(format_args!(
                    "the chained preStop command {name:?} outlived the timeout; killed it"
                ));
                return;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return,
        }
    }
}

fn relay(
    dir: &IpcDir,
    args: &TerminateArgs,
    started: Instant,
    report: &mut Reporter,
) -> Result<(), ClientError> {
    run_first(args, started, report);
    let (pid, source) = match client::resolve_target(dir, args.pid)? {
        Lookup::Found(found) => found,
        Lookup::NotRegistered(why) => {
            report.line(format_args!(
                "nothing to do: {why}; Kubernetes sends SIGTERM as usual"
            ));
            return Ok(());
        }
    };
    let mut conn = match Connection::open(dir, pid, client::CONNECT_RETRY)? {
        Lookup::Found(conn) => conn,
        Lookup::NotRegistered(why) => {
            report.line(format_args!(
                "nothing to do: {why}; Kubernetes sends SIGTERM as usual"
            ));
            return Ok(());
        }
    };
    report.attach(pid);
    let from = match &source {
        TargetSource::Explicit => "--pid".to_owned(),
        TargetSource::File(path) => path.display().to_string(),
    };
    report.line(format_args!("asking PID {pid} (from {from}) to terminate"));
    conn.send_terminate()?;
    if args.no_wait {
        let ack = conn.read_ack(NO_WAIT_ACK.min(remaining(args.timeout, started)))?;
        report.line(match ack {
            Ack::Ok => format!("PID {pid} accepted the request; not waiting (--no-wait)"),
            Ack::Silent => format!("request sent to PID {pid} (no acknowledgement: a K8sDeputy.jl server); not waiting (--no-wait)"),
        });
        return Ok(());
    }
    let mut acked = false;
    let timeout = args.timeout.map(|t| remaining(Some(t), started));
    let exit = conn
        .wait_for_exit(timeout, &mut acked)
        .map_err(|err| match err {
            ClientError::Timeout { pid, .. } => ClientError::Timeout {
                pid,
                elapsed: started.elapsed(),
            },
            other => other,
        })?;
    let elapsed = started.elapsed();
    report.line(match exit {
        Exit::Reported(code) => {
            format!("PID {pid} reported its app exited with status {code} after {elapsed:.1?}")
        }
        Exit::Observed => format!("PID {pid} exited after {elapsed:.1?}"),
    });
    // The server may be the container's PID 1, waiting for us to disconnect before it exits;
    // its exit would SIGKILL us. Let the kernel close the socket as this process exits.
    std::mem::forget(conn);
    Ok(())
}

fn remaining(timeout: Option<Duration>, started: Instant) -> Duration {
    match timeout {
        Some(t) => t.saturating_sub(started.elapsed()),
        None => Duration::MAX,
    }
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
