//! The app fails its side of the protocol: it crashes inside its shutdown callback, or it never
//! exits after `terminate`. Either way the preStop must not hang, the log must say what happened,
//! and Kubernetes' own SIGTERM and SIGKILL must still come on time.

use std::time::Duration;

use deputy_e2e::deputy::injected_namespace;
use deputy_e2e::figures;
use deputy_e2e::pods::{demo_pod, DemoPod};
use deputy_e2e::termination::{
    delete_following_log, line_index, seconds_between, show, termination_events, wait_for_log,
    Graceful, RELAY_ASKS,
};
use deputy_e2e::{node, wait_running, MINUTE};
use kube::api::PostParams;
use serde_json::json;

use crate::NODE;

/// The grace period of the crashing Pods.
const GRACE: Duration = Duration::from_secs(30);
/// "Well inside the grace period": the drain's 3 s quiet period plus a loaded machine.
const PROMPT: Duration = Duration::from_secs(12);
/// The relay gives up at the grace period minus the webhook's 2 s margin.
const IGNORER_GRACE: Duration = Duration::from_secs(10);
/// The relay's `--timeout` the webhook derives from [`IGNORER_GRACE`].
const IGNORER_TIMEOUT: Duration = Duration::from_secs(8);
/// A shell app that logs SIGTERM and carries on, as an app stuck in its own loop would.
const IGNORER_SCRIPT: &str = "trap 'echo \"ignorer: got SIGTERM, ignoring it\"' TERM; \
     echo 'ignorer: started'; while :; do sleep 1 & wait $!; done";

/// Seconds from the DELETE to the first log line containing `needle`.
fn at(g: &Graceful, needle: &str) -> Option<f64> {
    let i = line_index(&g.lines, needle)?;
    Some(seconds_between(g.deletion.deleted_at, g.lines[i].at))
}

#[tokio::test]
async fn an_app_that_crashes_in_its_callback_is_gone_promptly_with_the_crash_in_its_log() {
    let node =
        node!("an_app_that_crashes_in_its_callback_is_gone_promptly_with_the_crash_in_its_log");
    let _node = NODE.read().await;
    let ns = injected_namespace(&node, "faults-crash", &[]).await;
    let pods = ns.pods();
    // The Rust library app aborts inside its handler: once as the container's PID 1, once
    // under `deputy-agent run` (`wrap`), which outlives it and reports how it died.
    let cases = [("crash-pid1", false), ("crash-wrapped", true)];
    for (name, wrap) in cases {
        let mut spec = DemoPod::new(name, &["/app/deputy-app"])
            .args(&["--handler-crash"])
            .grace(GRACE);
        if wrap {
            spec = spec.annotation("k8s-deputy.io/entrypoint", "wrap");
        }
        pods.create(&PostParams::default(), &demo_pod(spec))
            .await
            .unwrap_or_else(|e| panic!("create Pod {name}: {e}"));
    }
    for (name, _) in cases {
        wait_running(&pods, name, MINUTE).await.expect("runs");
        wait_for_log(&pods, name, "deputy-app: ready").await;
    }
    let (pid1, wrapped) = tokio::join!(
        delete_following_log(&pods, "crash-pid1", MINUTE),
        delete_following_log(&pods, "crash-wrapped", MINUTE),
    );
    for (name, g) in [("crash-pid1", &pid1), ("crash-wrapped", &wrapped)] {
        let log = show(&g.lines);
        let asks = line_index(&g.lines, RELAY_ASKS)
            .unwrap_or_else(|| panic!("{name}: the relay never asked:\n{log}"));
        let crash = line_index(&g.lines, "shutdown handler crashing")
            .unwrap_or_else(|| panic!("{name}: the crash is not in the log:\n{log}"));
        assert!(
            asks < crash,
            "{name}: the relay asked, then the app crashed:\n{log}"
        );
        assert!(
            line_index(&g.lines, "timeout").is_none(),
            "{name}: the relay did not wait for its deadline:\n{log}"
        );
        let code = g.deletion.exit_code;
        assert!(
            code.is_some_and(|c| c != 0),
            "{name}: the container's exit code shows the crash: {code:?} ({:?})\n{log}",
            g.deletion.reason
        );
        assert!(
            g.deletion.gone_after < PROMPT,
            "{name}: gone after {:?}, not well inside its {GRACE:?} grace period:\n{log}",
            g.deletion.gone_after
        );
    }
    // Under `run`, the relay hears how the app died (SIGABRT: 128 + 6) and returns cleanly.
    let wrapped_log = show(&wrapped.lines);
    assert!(
        line_index(&wrapped.lines, "reported its app exited with status 134").is_some(),
        "crash-wrapped: deputy-agent run reported the abort to the relay:\n{wrapped_log}"
    );
    assert_eq!(wrapped.deletion.exit_code, Some(134), "{wrapped_log}");
    let pid1_events = termination_events(&node, &ns.name, "crash-pid1")
        .await
        .expect("events");
    let wrapped_events = termination_events(&node, &ns.name, "crash-wrapped")
        .await
        .expect("events");
    assert!(
        !wrapped_events.iter().any(|r| r == "FailedPreStopHook"),
        "crash-wrapped: {wrapped_events:?}"
    );
    for (name, g, events) in [
        ("crash-pid1", &pid1, &pid1_events),
        ("crash-wrapped", &wrapped, &wrapped_events),
    ] {
        let gone = g.deletion.gone_after.as_secs_f64();
        let crash = at(g, "shutdown handler crashing").unwrap_or(f64::NAN);
        let failed_hook = events.iter().any(|r| r == "FailedPreStopHook");
        figures::record(
            "faults",
            &format!(
                "{name}: the callback aborts {crash:.2} s after the DELETE; exit {:?} ({}); gone \
                 {gone:.2} s of a {} s grace; FailedPreStopHook: {failed_hook}",
                g.deletion.exit_code,
                g.deletion.reason.as_deref().unwrap_or("?"),
                GRACE.as_secs()
            ),
            json!({
                "pod": name, "crash_s": crash, "exit_code": g.deletion.exit_code,
                "gone_s": gone, "grace_s": GRACE.as_secs(), "failed_prestop_hook": failed_hook,
            }),
        );
    }
}

#[tokio::test]
async fn an_app_that_ignores_terminate_gets_the_relay_deadline_then_sigterm_then_sigkill() {
    let node =
        node!("an_app_that_ignores_terminate_gets_the_relay_deadline_then_sigterm_then_sigkill");
    let _node = NODE.read().await;
    let ns = injected_namespace(&node, "faults-ignore", &[]).await;
    let pods = ns.pods();
    // A registered library app whose callback only logs (PID 1), and a shell app under
    // `deputy-agent run` that traps SIGTERM and carries on.
    let lib = DemoPod::new("ignorer-lib", &["/app/deputy-app"])
        .args(&["--ignore-terminate"])
        .grace(IGNORER_GRACE);
    let sh = DemoPod::new("ignorer-sh", &["/bin/sh", "-c", IGNORER_SCRIPT])
        .annotation("k8s-deputy.io/entrypoint", "wrap")
        .grace(IGNORER_GRACE);
    for spec in [lib, sh] {
        let name = spec.name.clone();
        pods.create(&PostParams::default(), &demo_pod(spec))
            .await
            .unwrap_or_else(|e| panic!("create Pod {name}: {e}"));
    }
    wait_running(&pods, "ignorer-lib", MINUTE)
        .await
        .expect("runs");
    wait_running(&pods, "ignorer-sh", MINUTE)
        .await
        .expect("runs");
    wait_for_log(&pods, "ignorer-lib", "deputy-app: ready").await;
    wait_for_log(&pods, "ignorer-sh", "ignorer: started").await;
    let deadline = IGNORER_GRACE + MINUTE;
    let (lib, sh) = tokio::join!(
        delete_following_log(&pods, "ignorer-lib", deadline),
        delete_following_log(&pods, "ignorer-sh", deadline),
    );
    for (name, g, ignored) in [
        ("ignorer-lib", &lib, "terminate request ignored"),
        ("ignorer-sh", &sh, "ignorer: got SIGTERM, ignoring it"),
    ] {
        let log = show(&g.lines);
        let asks = at(g, RELAY_ASKS).unwrap_or_else(|| panic!("{name}: no relay:\n{log}"));
        let ignored_at = at(g, ignored)
            .unwrap_or_else(|| panic!("{name}: the app did not get the request:\n{log}"));
        let gave_up = at(g, "giving up on PID")
            .unwrap_or_else(|| panic!("{name}: the relay did not say it gave up:\n{log}"));
        assert!(
            line_index(&g.lines, "k8s-deputy.io/terminate-timeout").is_some(),
            "{name}: the relay says what to change:\n{log}"
        );
        assert!(asks <= ignored_at, "{name}:\n{log}");
        // The relay's deadline counts from the start of the preStop hook (shortly after the
        // DELETE), so it gives up about IGNORER_TIMEOUT after it, not earlier.
        assert!(
            gave_up >= IGNORER_TIMEOUT.as_secs_f64() - 0.5,
            "{name}: gave up {gave_up:.2} s after the DELETE, before its {IGNORER_TIMEOUT:?}:\n{log}"
        );
        let gone = g.deletion.gone_after;
        assert!(
            gone >= IGNORER_GRACE - Duration::from_secs(1) && gone < IGNORER_GRACE + PROMPT,
            "{name}: gone after {gone:?}, not at its {IGNORER_GRACE:?} grace period:\n{log}"
        );
        assert_eq!(
            g.deletion.exit_code,
            Some(137),
            "{name}: SIGKILL at the end ({:?}):\n{log}",
            g.deletion.reason
        );
        let events = termination_events(&node, &ns.name, name)
            .await
            .expect("events");
        figures::record(
            "faults",
            &format!(
                "{name}: relay asks at {asks:.2} s, the app ignores it at {ignored_at:.2} s, the relay \
                 gives up at {gave_up:.2} s (its --timeout {} s), gone {:.2} s after the DELETE \
                 (grace {} s), exit 137; events {events:?}",
                IGNORER_TIMEOUT.as_secs(),
                gone.as_secs_f64(),
                IGNORER_GRACE.as_secs()
            ),
            json!({
                "pod": name, "asks_s": asks, "ignored_s": ignored_at, "gave_up_s": gave_up,
                "timeout_s": IGNORER_TIMEOUT.as_secs(), "gone_s": gone.as_secs_f64(),
                "grace_s": IGNORER_GRACE.as_secs(), "exit_code": 137, "events": events,
            }),
        );
    }
    // The shell app shows Kubernetes' own SIGTERM after the relay gave up (forwarded by
    // `deputy-agent run`): the trap's line comes twice, once for the relay, once after it.
    let log = show(&sh.lines);
    let traps: Vec<f64> = sh
        .lines
        .iter()
        .filter(|l| l.text.contains("ignorer: got SIGTERM"))
        .map(|l| seconds_between(sh.deletion.deleted_at, l.at))
        .collect();
    let gave_up = at(&sh, "giving up on PID").expect("checked above");
    assert!(
        traps.len() >= 2 && traps.iter().any(|t| *t >= gave_up - 0.1),
        "ignorer-sh: a SIGTERM from the relay and one from the kubelet after it gave up:\n{log}"
    );
}
