//! `Deputy` through every state, over real HTTP: not ready, ready, shutting down (both probes
//! 503 so endpoints drain), and the exit statuses of a clean, failed and timed-out handler.

use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn health_endpoints_follow_readiness_and_shutdown() {
    let dir = ipc_dir();
    let mut app = start_app(
        dir.path(),
        &["--ready-on-stdin", "--handler-sleep", "1500ms"],
    );
    let addr = health_addr(&app);
    assert_eq!(http_get(&addr, "/health/live"), 200);
    assert_eq!(
        http_get(&addr, "/health/ready"),
        503,
        "not ready before readied()"
    );
    assert_eq!(http_get(&addr, "/nope"), 404);
    app.send("ready");
    app.wait_for_line("deputy-app: ready");
    assert_eq!(http_get(&addr, "/health/ready"), 200);
    let (code, out) = agent_output(dir.path(), &["terminate", "--no-wait"]);
    assert_eq!(code, 0, "{out}");
    app.wait_for_line("shutdown handler started");
    // While the handler runs: not live, and no longer ready (K8sDeputy.jl kept ready 200).
    assert_eq!(http_get(&addr, "/health/live"), 503);
    assert_eq!(http_get(&addr, "/health/ready"), 503);
    assert_eq!(app.wait_exit(DEADLINE), 0);
}

#[test]
fn a_failing_handler_exits_1() {
    let dir = ipc_dir();
    let mut app = start_app(dir.path(), &["--handler-fail"]);
    app.send("shutdown");
    app.wait_for_line("shutdown handler failed");
    assert_eq!(app.wait_exit(DEADLINE), deputy_agent::EXIT_HANDLER_FAILED);
}

#[test]
fn a_handler_that_outlives_its_timeout_is_abandoned_with_status_124() {
    let dir = ipc_dir();
    let mut app = start_app(
        dir.path(),
        &["--handler-sleep", "60s", "--timeout", "200ms"],
    );
    let started = Instant::now();
    app.send("shutdown");
    assert_eq!(
        app.wait_exit(DEADLINE),
        deputy_agent::EXIT_HANDLER_TIMED_OUT
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(200),
        "exited before the timeout: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "the 60 s handler was waited for: {elapsed:?}"
    );
}
