//! `deputy-agent terminate` against real registered processes: the library app, a K8sDeputy.jl
//! server, stale and foreign registrations, refused UIDs, timeouts and concurrency.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn terminate_runs_the_apps_callback_and_returns_after_it_exits() {
    let dir = ipc_dir();
    let mut app = start_app(dir.path(), &["--handler-sleep", "300ms"]);
    let started = Instant::now();
    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "10s"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "returned before the handler finished"
    );
    assert!(out.contains(&format!("PID {}", app.pid())), "{out}");
    app.wait_for_line("shutdown handler ran");
    assert_eq!(app.wait_exit(DEADLINE), 0, "a clean shutdown exits 0");
    // The preStop's log lines are mirrored into the app's stdout, where kubectl logs reads.
    app.wait_for_line("deputy-agent terminate: asking PID");
    // The registration cleans up after itself.
    assert!(!dir
        .path()
        .join(format!("graceful-terminator.{}.socket", app.pid()))
        .exists());
    assert!(!dir.path().join("deputy-entrypoint.pid").exists());
}

#[test]
fn terminate_with_pid_targets_one_of_two_registered_processes() {
    let dir = ipc_dir();
    let mut first = start_app(dir.path(), &["--no-entrypoint"]);
    let mut second = start_app(dir.path(), &["--no-entrypoint"]);
    assert!(!dir.path().join("deputy-entrypoint.pid").exists());
    let pid = second.pid().to_string();
    let (code, out) = agent_output(dir.path(), &["terminate", "--pid", &pid]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(second.wait_exit(DEADLINE), 0);
    assert!(
        first.running(),
        "the other registered process must be untouched"
    );
    // Without --pid and without an entrypoint file there is nothing to do.
    let (code, out) = agent_output(dir.path(), &["terminate"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no entrypoint registered"), "{out}");
    assert!(first.running());
}

#[test]
fn k8sdeputy_jl_server_is_terminated_through_its_julia_entrypoint_file() {
    require!("python3" => have("python3"));
    let dir = ipc_dir();
    let mut command = Command::new("python3");
    command
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/k8sdeputy_server.py"
        ))
        .env("DEPUTY_IPC_DIR", dir.path());
    let mut julia = Proc::spawn(command);
    julia.wait_for_line("julia-like pid=");
    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "10s"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("julia-entrypoint.pid"), "{out}");
    julia.wait_for_line("callback ran");
    assert_eq!(julia.wait_exit(DEADLINE), 0);
}

#[test]
fn library_app_is_terminated_by_a_k8sdeputy_jl_style_client() {
    let dir = ipc_dir();
    let mut app = start_app(dir.path(), &[]);
    // K8sDeputy.jl's graceful_terminate: write the line, close, poll until the process is gone.
    {
        use std::io::Write;
        let path = dir
            .path()
            .join(format!("graceful-terminator.{}.socket", app.pid()));
        let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
        stream.write_all(b"terminate\n").unwrap();
    }
    assert_eq!(app.wait_exit(DEADLINE), 0);
    assert_eq!(app.count("shutdown handler ran"), 1);
}

#[test]
fn nothing_registered_is_reported_and_exits_zero() {
    let dir = ipc_dir();
    let (code, out) = agent_output(dir.path(), &["terminate"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("deputy-entrypoint.pid") && out.contains("julia-entrypoint.pid"),
        "{out}"
    );
}

#[test]
fn a_stale_registration_never_touches_the_process_now_using_that_pid() {
    let dir = ipc_dir();
    // An unrelated process now holds the PID the stale file names ("PID reuse").
    let mut unrelated = Proc::spawn({
        let mut c = Command::new("sleep");
        c.arg("30");
        c
    });
    let pid = unrelated.pid();
    std::fs::write(dir.path().join("deputy-entrypoint.pid"), format!("{pid}\n")).unwrap();
    // Case 1: the old socket file is still there but nobody listens.
    let socket = dir.path().join(format!("graceful-terminator.{pid}.socket"));
    drop(UnixListener::bind(&socket).unwrap());
    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "2s"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is not registered"), "{out}");
    assert!(
        unrelated.running(),
        "the unrelated process must not be touched"
    );

    // Case 2: someone else (this test) listens on the path named after that PID.
    std::fs::remove_file(&socket).unwrap();
    let impostor = UnixListener::bind(&socket).unwrap();
    impostor.set_nonblocking(true).unwrap();
    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "2s"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("not PID {pid}")), "{out}");
    assert!(unrelated.running());
    // Negative control: the impostor did receive a connection, but no request line.
    let (mut conn, _) = impostor
        .accept()
        .expect("the client connected to check identity");
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut conn, &mut buf);
    assert!(
        buf.is_empty(),
        "no request may be sent to an unverified peer: {buf:?}"
    );
}

/// Runs `deputy-agent terminate ARGS` as UID/GID 65534 on `dir`; returns its exit code and stderr.
/// The binary runs from a copy in a directory anyone may enter: the build's own may sit under a
/// home that UID 65534 cannot traverse (`make` builds in `~/.cache/k8s-deputy/tree`).
fn terminate_as_nobody(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let copy_dir = tempfile::Builder::new()
        .prefix("deputy-agent-for-any-uid-")
        .tempdir()
        .expect("tempdir");
    std::fs::set_permissions(copy_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let copy = copy_dir.path().join("deputy-agent");
    std::fs::copy(agent_binary(), &copy).expect("copy the agent for another UID");
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run_binary(&copy)
        .arg("terminate")
        .args(args)
        .env("DEPUTY_IPC_DIR", dir)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_peer_with_another_uid_is_refused_and_root_is_accepted() {
    require!("root (to run a client as another UID)" => is_root());
    let dir = ipc_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut app = start_app(dir.path(), &[]);
    let socket = dir
        .path()
        .join(format!("graceful-terminator.{}.socket", app.pid()));
    assert_eq!(
        std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777,
        0o600,
        "sockets are created 0600"
    );
    // Loosen the file mode so only the server's SO_PEERCRED check stands in the way.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let pid = app.pid().to_string();
    let (code, text) = terminate_as_nobody(dir.path(), &["--pid", &pid, "--timeout", "3s"]);
    // A non-root client accepts a root peer; it is the server that must refuse the client.
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("refused"), "{text}");
    assert!(
        app.running(),
        "a refused request must not terminate the app"
    );
    assert_eq!(app.count("shutdown handler"), 0);
    // Negative control: the same request from root works.
    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "10s"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(app.wait_exit(DEADLINE), 0);
}

#[test]
fn a_client_kept_out_by_the_socket_mode_says_so_and_fails_instead_of_finding_nothing() {
    require!("root (to run a client as another UID)" => is_root());
    let dir = ipc_dir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut app = start_app(dir.path(), &[]);
    let (code, text) = terminate_as_nobody(dir.path(), &["--timeout", "3s"]);
    // Before: "nothing to do: PID N is not registered" and exit 0, as if no app were there.
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("permission denied")
            && text.contains("belongs to UID 0")
            && text.contains("runs as UID 65534")
            && !text.contains("nothing to do"),
        "{text}"
    );
    assert!(app.running(), "the app was not asked");
    assert_eq!(app.count("shutdown handler"), 0);
    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "10s"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(app.wait_exit(DEADLINE), 0);
}

#[test]
fn timeout_on_an_app_that_ignores_the_request_names_pid_and_elapsed_time() {
    let dir = ipc_dir();
    let mut app = start_app(dir.path(), &["--ignore-terminate"]);
    let started = Instant::now();
    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "400ms"]);
    let elapsed = started.elapsed();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(&format!("PID {}", app.pid())) && out.contains("timeout"),
        "{out}"
    );
    assert!(
        out.contains("Kubernetes sends SIGTERM next")
            && out.contains("k8s-deputy.io/terminate-timeout"),
        "the relay says what happens next and what to change: {out}"
    );
    assert!(
        elapsed >= Duration::from_millis(400),
        "gave up early: {elapsed:?}"
    );
    app.wait_for_line("terminate request ignored");
    assert!(app.running());
}

#[test]
fn concurrent_terminate_calls_all_wait_and_the_callback_runs_once() {
    let dir = ipc_dir();
    let mut app = start_app(dir.path(), &["--handler-sleep", "300ms"]);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            Command::new(agent())
                .args(["terminate", "--timeout", "10s"])
                .env("DEPUTY_IPC_DIR", dir.path())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for client in clients {
        let out = client.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(app.wait_exit(DEADLINE), 0);
    assert_eq!(
        app.count("shutdown handler started"),
        1,
        "{:#?}",
        app.lines()
    );
}

#[test]
fn no_wait_returns_once_the_request_is_accepted() {
    let dir = ipc_dir();
    let mut app = start_app(dir.path(), &["--handler-sleep", "2s"]);
    let (code, out) = agent_output(dir.path(), &["terminate", "--no-wait"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("accepted the request"), "{out}");
    assert!(app.running(), "--no-wait must not wait for the 2 s handler");
    assert_eq!(app.wait_exit(DEADLINE), 0);
}

#[test]
fn usage_errors_exit_2_and_name_the_flag() {
    let dir = ipc_dir();
    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "soon"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("--timeout"), "{out}");
}

#[test]
fn a_chained_prestop_handler_runs_first_within_the_same_deadline() {
    let dir = ipc_dir();
    let mut app = start_app(dir.path(), &[]);
    let marker = dir.path().join("first-ran");
    let started = Instant::now();
    let script = format!("test ! -e {0}.later && touch {0}", marker.display());
    let (code, out) = agent_output(
        dir.path(),
        &[
            "terminate",
            "--timeout",
            "10s",
            "--sleep-first",
            "200ms",
            "--",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "the sleep ran first"
    );
    assert!(marker.exists(), "the chained command ran: {out}");
    assert_eq!(app.wait_exit(DEADLINE), 0, "and the relay followed");
    // A failing chained command is reported, and the relay still happens.
    let mut app = start_app(dir.path(), &[]);
    let (code, out) = agent_output(
        dir.path(),
        &["terminate", "--timeout", "10s", "--", "false"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("failed"), "{out}");
    assert_eq!(app.wait_exit(DEADLINE), 0);
}
