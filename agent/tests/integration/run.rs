//! `deputy-agent run`: a correct PID 1 — signal forwarding, exit statuses, reaping orphans in a
//! real PID namespace, relaying to a registered grandchild, SIGKILL after the grace period, and
//! outliving the preStop client so Kubernetes never reports `FailedPreStopHook`.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::common::*;

fn run_cmd(dir: &Path, run_args: &[&str], script: &str) -> Command {
    let mut command = Command::new(agent());
    command
        .arg("run")
        .args(run_args)
        .args(["--", "sh", "-c", script])
        .env("DEPUTY_IPC_DIR", dir);
    command
}

/// A shell loop that stays responsive to trapped signals.
const RESPONSIVE: &str = "while :; do sleep 0.05 & wait $!; done";

#[test]
fn run_forwards_signals_and_exits_with_the_childs_status() {
    let dir = ipc_dir();
    let script = format!(
        "trap 'echo got USR1' USR1; trap 'echo got TERM; exit 3' TERM; echo started; {RESPONSIVE}"
    );
    let mut run = Proc::spawn(run_cmd(dir.path(), &[], &script));
    run.wait_for_line("started");
    kill(Pid::from_raw(run.pid()), Signal::SIGUSR1).unwrap();
    run.wait_for_line("got USR1");
    assert!(run.running());
    kill(Pid::from_raw(run.pid()), Signal::SIGTERM).unwrap();
    run.wait_for_line("got TERM");
    assert_eq!(run.wait_exit(DEADLINE), 3);
}

#[test]
fn run_reports_death_by_signal_as_128_plus_n_and_a_missing_command_as_127() {
    let dir = ipc_dir();
    let mut run = Proc::spawn(run_cmd(dir.path(), &[], "kill -KILL $$"));
    assert_eq!(run.wait_exit(DEADLINE), 137);
    let (code, out) = agent_output(dir.path(), &["run", "--", "/nonexistent/app"]);
    assert_eq!(code, 127, "{out}");
    assert!(out.contains("/nonexistent/app"), "{out}");
}

#[test]
fn run_registers_as_entrypoint_and_relays_terminate_to_a_grandchild_under_sh_c() {
    let dir = ipc_dir();
    let script = format!(
        "{} --handler-sleep 100ms; echo app-exited=$?",
        example_app().display()
    );
    let mut run = Proc::spawn(run_cmd(dir.path(), &[], &script));
    let registered = run.wait_for_line("registered pid=");
    assert!(
        registered.contains("entrypoint=false"),
        "under run the app leaves the entrypoint to run: {registered}"
    );
    let entrypoint = std::fs::read_to_string(dir.path().join("deputy-entrypoint.pid")).unwrap();
    assert_eq!(entrypoint.trim(), run.pid().to_string());

    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "10s"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("reported its app exited with status 0"),
        "{out}"
    );
    run.wait_for_line("shutdown handler ran");
    // The app ran its callback and exited 0; a SIGTERM would have killed it (status 143).
    run.wait_for_line("app-exited=0");
    assert_eq!(run.wait_exit(DEADLINE), 0);
}

#[test]
fn run_sends_sigkill_when_the_grace_period_ends() {
    let dir = ipc_dir();
    let script = "trap '' TERM; echo started; while :; do sleep 0.05; done";
    let mut run = Proc::spawn(run_cmd(dir.path(), &["--grace", "300ms"], script));
    run.wait_for_line("started");
    kill(Pid::from_raw(run.pid()), Signal::SIGTERM).unwrap();
    assert_eq!(run.wait_exit(DEADLINE), 137);
}

#[test]
fn run_with_process_group_signals_the_whole_group() {
    let dir = ipc_dir();
    let script = "sleep 30 & echo bg=$!; wait";
    for (args, survives) in [(&["-g"][..], false), (&[][..], true)] {
        let mut run = Proc::spawn(run_cmd(dir.path(), args, script));
        let bg: i32 = run.wait_for_line("bg=")[3..].trim().parse().unwrap();
        kill(Pid::from_raw(run.pid()), Signal::SIGTERM).unwrap();
        assert_eq!(run.wait_exit(DEADLINE), 143);
        let alive = poll_until(Duration::from_secs(2), || {
            let stat = std::fs::read_to_string(format!("/proc/{bg}/stat")).ok();
            let gone = stat.is_none_or(|s| s.contains(") Z "));
            gone.then_some(())
        })
        .is_none();
        // Negative control: without -g only the shell gets SIGTERM and its child lives on.
        assert_eq!(alive, survives, "args {args:?}");
        let _ = kill(Pid::from_raw(bg), Signal::SIGKILL);
    }
}

/// The host PID of the namespace's PID 1 started by `unshare --fork` (its only child).
fn namespace_init(unshare_pid: i32) -> i32 {
    poll_until(DEADLINE, || {
        let children =
            std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                .ok()?;
        children.split_whitespace().next()?.parse().ok()
    })
    .expect("unshare forked its child")
}

fn in_pid_namespace(program: &str, args: &[&str], dir: &Path) -> Proc {
    let mut command = Command::new("unshare");
    command
        .args(["--pid", "--fork", "--mount-proc", "--kill-child", program])
        .args(args)
        .env("DEPUTY_IPC_DIR", dir);
    Proc::spawn(command)
}

/// Runs `deputy-agent terminate` inside the PID and mount namespaces of `init` (as a preStop
/// exec runs inside the container); returns (exit code, output).
fn prestop_in_namespace_of(init: i32, dir: &Path) -> (i32, String) {
    let out = Command::new("nsenter")
        .args([
            "-t",
            &init.to_string(),
            "-p",
            "-m",
            "--",
            agent(),
            "terminate",
            "--timeout",
            "10s",
        ])
        .env("DEPUTY_IPC_DIR", dir)
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    let code = out
        .status
        .code()
        .unwrap_or_else(|| 128 + out.status.signal().unwrap_or(0));
    (code, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn run_as_pid_1_outlives_the_prestop_client_so_the_hook_never_fails() {
    require!("root" => is_root(), "unshare" => have("unshare"), "nsenter" => have("nsenter"));
    let dir = ipc_dir();
    let script = format!("trap 'echo app got TERM; exit 0' TERM; echo started; {RESPONSIVE}");
    let mut ns = in_pid_namespace(agent(), &["run", "--", "sh", "-c", &script], dir.path());
    ns.wait_for_line("started");
    let init = namespace_init(ns.pid());
    let entrypoint = std::fs::read_to_string(dir.path().join("deputy-entrypoint.pid")).unwrap();
    assert_eq!(entrypoint.trim(), "1", "run is PID 1 in its namespace");
    let (code, out) = prestop_in_namespace_of(init, dir.path());
    assert_eq!(code, 0, "the preStop client must finish normally: {out}");
    assert!(
        out.contains("reported its app exited with status 0"),
        "{out}"
    );
    ns.wait_for_line("app got TERM");
    assert_eq!(ns.wait_exit(DEADLINE), 0);
}

#[test]
fn negative_control_a_pid_1_app_that_just_exits_kills_its_prestop_client() {
    require!("root" => is_root(), "unshare" => have("unshare"), "nsenter" => have("nsenter"), "python3" => have("python3"));
    let dir = ipc_dir();
    let server = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/k8sdeputy_server.py"
    );
    let mut ns = in_pid_namespace("python3", &[server], dir.path());
    ns.wait_for_line("julia-like pid=1");
    let init = namespace_init(ns.pid());
    let (code, out) = prestop_in_namespace_of(init, dir.path());
    // The kernel kills every process of the namespace when its PID 1 exits: the hook dies with
    // SIGKILL, which Kubernetes reports as FailedPreStopHook. `run` exists to prevent this.
    assert_eq!(code, 137, "{out}");
    ns.wait_exit(DEADLINE);
}

#[test]
fn run_as_pid_1_reaps_orphaned_zombies() {
    require!("root" => is_root(), "unshare" => have("unshare"), "python3" => have("python3"));
    // Double-fork an orphan that exits at once, then list process states in the namespace.
    let script = "(sleep 0.1 &); sleep 0.8; \
                  for f in /proc/[0-9]*/stat; do read -r pid comm state rest < $f && echo \"proc $pid $comm $state\"; done";
    let zombies = |program: &str, args: &[&str]| {
        let dir = ipc_dir();
        let mut ns = in_pid_namespace(program, args, dir.path());
        ns.wait_exit(DEADLINE);
        let lines = ns.lines();
        assert!(lines.iter().any(|l| l.starts_with("proc ")), "{lines:#?}");
        lines
            .iter()
            .filter(|l| l.starts_with("proc ") && l.ends_with(" Z"))
            .count()
    };
    assert_eq!(zombies(agent(), &["run", "--", "sh", "-c", script]), 0);
    // Negative control: a PID 1 that waits only for its own child leaves the orphan a zombie.
    let no_reaper =
        format!("import subprocess, sys; sys.exit(subprocess.call(['sh', '-c', {script:?}]))");
    assert_eq!(zombies("python3", &["-c", &no_reaper]), 1);
}
