//! The kubelet restarts while a preStop relay is running. Kubernetes gives no promise here; the
//! test records what it does (whether the new kubelet runs the hook again, how long the Pod takes)
//! and holds our side to its own: the callback runs once, and nothing waits past its deadline.

use std::time::Duration;

use deputy_e2e::deputy::injected_namespace;
use deputy_e2e::figures;
use deputy_e2e::pods::{demo_pod, DemoPod};
use deputy_e2e::termination::{
    delete_and_watch, pod_event_reasons, seconds_between, show, LogFollower, RELAY_ASKS,
};
use deputy_e2e::{node, poll, wait_running, MINUTE};
use kube::api::PostParams;
use serde_json::json;

use crate::NODE;

/// Long enough that the kubelet is down and back while the callback still runs.
const HANDLER: &str = "20s";
const GRACE: Duration = Duration::from_secs(40);

#[tokio::test]
async fn a_kubelet_restart_during_the_relay_neither_hangs_it_nor_runs_the_callback_twice() {
    let node =
        node!("a_kubelet_restart_during_the_relay_neither_hangs_it_nor_runs_the_callback_twice");
    let _node = NODE.write().await;
    let ns = injected_namespace(&node, "faults-kubelet", &[]).await;
    let pods = ns.pods();
    let name = "kubelet-restart";
    pods.create(
        &PostParams::default(),
        &demo_pod(
            DemoPod::new(name, &["/app/deputy-app"])
                .args(&["--handler-sleep", HANDLER, "--timeout", "35s"])
                .annotation("k8s-deputy.io/drain", "0s")
                .grace(GRACE),
        ),
    )
    .await
    .expect("create the Pod");
    wait_running(&pods, name, MINUTE).await.expect("runs");
    deputy_e2e::termination::wait_for_log(&pods, name, "deputy-app: ready").await;

    let deletion = {
        let pods = pods.clone();
        tokio::spawn(async move { delete_and_watch(&pods, name, GRACE + MINUTE).await })
    };
    poll("the callback started", MINUTE, || async {
        let text = pods.logs(name, &Default::default()).await?;
        Ok(text.contains("shutdown handler started").then_some(()))
    })
    .await
    .expect("the relay reached the app");
    let restart = {
        let node = node.clone();
        tokio::task::spawn_blocking(move || node.restart_daemon("kubelet", Duration::from_secs(2)))
            .await
            .expect("the restart task")
            .expect("the kubelet restarts")
    };
    // Logs are served through the kubelet, so they are followed once it is back: from the
    // container's start, to its end (the callback still runs).
    let follower = poll("the log served again", MINUTE, || async {
        Ok(LogFollower::start(&pods, name).await.ok())
    })
    .await
    .expect("follow the log once the kubelet is back (the callback still runs)");
    let deletion = deletion
        .await
        .expect("the deletion task")
        .expect("the Pod is deleted");
    let lines = follower
        .finish(Duration::from_secs(30))
        .await
        .expect("the log to its end");
    let log = show(&lines);
    let count = |needle: &str| lines.iter().filter(|l| l.text.contains(needle)).count();
    let relays = count(RELAY_ASKS);
    assert_eq!(
        count("shutdown handler started"),
        1,
        "the callback ran once, whatever the kubelet did:\n{log}"
    );
    assert_eq!(count("shutdown handler ran"), 1, "and finished:\n{log}");
    assert!(relays >= 1, "{log}");
    assert!(
        !log.contains("timeout"),
        "no relay waited for its deadline:\n{log}"
    );
    assert_eq!(deletion.exit_code, Some(0), "{log}");
    assert!(
        deletion.gone_after < GRACE,
        "gone after {:?}, inside its {GRACE:?} grace period:\n{log}",
        deletion.gone_after
    );
    let ran = lines
        .iter()
        .find(|l| l.text.contains("shutdown handler ran"))
        .map(|l| seconds_between(deletion.deleted_at, l.at))
        .unwrap_or(f64::NAN);
    let events = pod_event_reasons(&node, &ns.name, name)
        .await
        .unwrap_or_default();
    let gone = deletion.gone_after.as_secs_f64();
    figures::record(
        "faults",
        &format!(
            "kubelet restarted during the relay ({restart}): the relay asked {relays} time(s), the \
             callback ran once ({HANDLER}, done {ran:.2} s after the DELETE), exit 0, gone \
             {gone:.2} s of a {} s grace; events {events:?}",
            GRACE.as_secs()
        ),
        json!({
            "restart": restart, "relays": relays, "callbacks": 1, "callback_done_s": ran,
            "gone_s": gone, "grace_s": GRACE.as_secs(), "events": events,
        }),
    );
}
