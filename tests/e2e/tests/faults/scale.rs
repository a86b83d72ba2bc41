//! Many injected Pods terminating at once: 30 evicted under a PodDisruptionBudget (through the
//! Eviction API, then with `kubectl drain`), and 50 deleted together against the same 50 without
//! k8s-deputy. Every Pod must shut down through its callback, with no `FailedPreStopHook`.
//!
//! One node: Pods evicted by `kubectl drain` cannot be replaced on the cordoned node, so the drain
//! runs under a budget that admits all 30 evictions; the Eviction API case runs uncordoned under
//! a budget of 10 unavailable, so the API refuses evictions (429) until replacements are ready.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deputy_e2e::deputy::{injected_namespace, INJECT_LABEL};
use deputy_e2e::figures;
use deputy_e2e::pods::{demo_pod, DemoPod};
use deputy_e2e::termination::{line_index, show, LogFollower, LogLine, RELAY_CLEAN};
use deputy_e2e::{node, poll, Node, TestNamespace, MINUTE};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Event, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use crate::NODE;

const EVICTED: i32 = 30;
const DELETED: usize = 50;
const SELECTOR: &str = "app=many";
/// The grace period of the Pods deleted together (both kinds).
/// The Kubernetes default: the kubelet's own work for 50 Pods at once on 2 cores takes about 9 s,
/// which a short grace period would hide the difference in.
const MASS_GRACE: Duration = Duration::from_secs(30);

/// The Pods matching [`SELECTOR`] that are not being deleted, by name.
async fn live_pods(pods: &Api<Pod>) -> BTreeMap<String, Pod> {
    pods.list(&ListParams::default().labels(SELECTOR))
        .await
        .expect("list Pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
        .collect()
}

fn ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|c| !c.is_empty() && c.iter().all(|c| c.ready))
}

/// Waits until `n` Pods of [`SELECTOR`] (none being deleted) are ready, and returns their names.
async fn ready_pods(pods: &Api<Pod>, n: usize, deadline: Duration) -> Vec<String> {
    poll(
        &format!("{n} ready Pods of {SELECTOR}"),
        deadline,
        || async {
            let live = live_pods(pods).await;
            let ready: Vec<String> = live
                .iter()
                .filter(|(_, p)| ready(p))
                .map(|(n, _)| n.clone())
                .collect();
            Ok((ready.len() == n).then_some(ready))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Waits until none of `names` exists; returns when the last one was gone.
async fn all_gone(pods: &Api<Pod>, names: &[String], since: Instant, deadline: Duration) -> f64 {
    poll("every terminated Pod gone", deadline, || async {
        for name in names {
            if pods.get_opt(name).await?.is_some() {
                return Ok(None);
            }
        }
        Ok(Some(since.elapsed().as_secs_f64()))
    })
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// Follows the log of every named Pod.
async fn follow_all(pods: &Api<Pod>, names: &[String]) -> Vec<(String, LogFollower)> {
    let mut followers = Vec::new();
    for name in names {
        let follower = LogFollower::start(pods, name)
            .await
            .unwrap_or_else(|e| panic!("follow the log of {name}: {e:#}"));
        followers.push((name.clone(), follower));
    }
    followers
}

/// Collects the logs and returns the names of the Pods whose log lacks `callback` or the relay's
/// clean report, with their logs.
async fn not_graceful(
    followers: Vec<(String, LogFollower)>,
    callback: &str,
) -> Vec<(String, String)> {
    let mut bad = Vec::new();
    for (name, follower) in followers {
        let lines: Vec<LogLine> = follower
            .finish(MINUTE)
            .await
            .unwrap_or_else(|e| panic!("the log of {name}: {e:#}"));
        if line_index(&lines, callback).is_none() || line_index(&lines, RELAY_CLEAN).is_none() {
            bad.push((name, show(&lines)));
        }
    }
    bad
}

/// The number of `FailedPreStopHook` events in the namespace.
async fn failed_hooks(node: &Node, ns: &TestNamespace) -> usize {
    Api::<Event>::namespaced(node.client.clone(), &ns.name)
        .list(&ListParams::default())
        .await
        .expect("list events")
        .items
        .iter()
        .filter(|e| e.reason.as_deref() == Some("FailedPreStopHook"))
        .count()
}

/// Uncordons the node when dropped (also when the test fails half-way).
struct Uncordon<'a>(&'a Node, String);

impl Drop for Uncordon<'_> {
    fn drop(&mut self) {
        let _ = self.0.kubectl(&["uncordon", &self.1]);
    }
}

/// Evicts one Pod through the Eviction API; returns when it was accepted, after `since`. The
/// client retries the budget's refusals (429) itself, with backoff; so does this, past them.
async fn evict(pods: &Api<Pod>, name: &str, since: Instant) -> f64 {
    loop {
        match pods.evict(name, &EvictParams::default()).await {
            Ok(_) => return since.elapsed().as_secs_f64(),
            Err(kube::Error::Api(e)) if e.code == 429 && since.elapsed() < 3 * MINUTE => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("evict {name}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_injected_pods_evicted_under_a_budget_all_shut_down_through_their_callbacks() {
    let node =
        node!("thirty_injected_pods_evicted_under_a_budget_all_shut_down_through_their_callbacks");
    let _node = NODE.write().await;
    let ns = injected_namespace(&node, "faults-evict", &[]).await;
    let pods = ns.pods();
    let mut template = serde_json::to_value(demo_pod(
        DemoPod::new("unused", &["/app/deputy-app"]).args(&["--handler-sleep", "100ms"]),
    ))
    .expect("JSON");
    template["metadata"] = json!({"labels": {"app": "many"}});
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "many"},
        "spec": {"replicas": EVICTED, "selector": {"matchLabels": {"app": "many"}}, "template": template},
    }))
    .expect("a Deployment");
    Api::<Deployment>::namespaced(node.client.clone(), &ns.name)
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create the Deployment");
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(node.client.clone(), &ns.name);
    let budget: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "many"},
        "spec": {"maxUnavailable": 10, "selector": {"matchLabels": {"app": "many"}}},
    }))
    .expect("a PodDisruptionBudget");
    budgets
        .create(&PostParams::default(), &budget)
        .await
        .expect("create the budget");
    let n = usize::try_from(EVICTED).expect("a count");

    // 1. The Eviction API, all 30 at once, under a budget of 10 unavailable (once the
    // disruption controller has computed it).
    let first = ready_pods(&pods, n, 3 * MINUTE).await;
    poll("the budget allows 10 disruptions", MINUTE, || async {
        let status = budgets.get("many").await?.status.unwrap_or_default();
        Ok((status.disruptions_allowed == 10).then_some(()))
    })
    .await
    .expect("the disruption controller computes the budget");
    let followers = follow_all(&pods, &first).await;
    let started = Instant::now();
    let mut accepted: Vec<f64> =
        futures::future::join_all(first.iter().map(|name| evict(&pods, name, started))).await;
    accepted.sort_by(f64::total_cmp);
    let api_gone = all_gone(&pods, &first, started, 3 * MINUTE).await;
    // The budget held: ten went at once, the eleventh only once a replacement was ready.
    let (tenth, eleventh) = (accepted[9], accepted[10]);
    assert!(
        eleventh - accepted[0] >= 1.0,
        "30 evictions at once under a budget of 10 unavailable were accepted at {accepted:?} s"
    );
    let bad = not_graceful(followers, "deputy-app: shutdown handler ran").await;
    assert!(
        bad.is_empty(),
        "evicted Pods that did not shut down through their callback: {bad:#?}"
    );

    // 2. `kubectl drain` of the node, for these Pods only, under a budget admitting all 30 (the
    // replacements cannot schedule on the cordoned node).
    let second = ready_pods(&pods, n, 3 * MINUTE).await;
    budgets
        .patch(
            "many",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxUnavailable": EVICTED}})),
        )
        .await
        .expect("widen the budget");
    let node_name = node
        .kubectl_ok(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])
        .expect("the node's name");
    let _uncordon = Uncordon(&node, node_name.clone());
    // Injected Pods carry emptyDirs (the agent's and the IPC volume): drain refuses them without
    // --delete-emptydir-data, as it refuses any Pod with local storage.
    let refused = node
        .kubectl(&[
            "drain",
            &node_name,
            "--pod-selector",
            SELECTOR,
            "--timeout",
            "20s",
        ])
        .expect("kubectl drain");
    assert!(
        !refused.success && refused.stderr.contains("local storage"),
        "drain without --delete-emptydir-data refuses injected Pods: {refused:?}"
    );
    let followers = follow_all(&pods, &second).await;
    let started = Instant::now();
    let drain = {
        let node = node.clone();
        let node_name = node_name.clone();
        tokio::task::spawn_blocking(move || {
            node.kubectl(&[
                "drain",
                &node_name,
                "--pod-selector",
                SELECTOR,
                "--delete-emptydir-data",
                "--ignore-daemonsets",
                "--timeout",
                "180s",
            ])
        })
        .await
        .expect("the drain task")
        .expect("kubectl drain")
    };
    assert!(drain.success, "kubectl drain: {drain:?}");
    let drain_gone = all_gone(&pods, &second, started, 3 * MINUTE).await;
    let bad = not_graceful(followers, "deputy-app: shutdown handler ran").await;
    assert!(
        bad.is_empty(),
        "drained Pods that did not shut down through their callback: {bad:#?}"
    );
    let hooks = failed_hooks(&node, &ns).await;
    assert_eq!(hooks, 0, "FailedPreStopHook events");
    figures::record(
        "faults",
        &format!(
            "{EVICTED} injected Pods evicted through the Eviction API at once (budget: 10 \
             unavailable): the 10th accepted after {tenth:.2} s, the 11th after {eleventh:.2} s \
             (a replacement ready), the last after {:.1} s; all gone {api_gone:.1} s after the \
             first request; then \
             {EVICTED} by kubectl drain (budget admitting all, node cordoned): all gone \
             {drain_gone:.1} s; {} callbacks of {}, FailedPreStopHook 0",
            accepted[accepted.len() - 1],
            2 * EVICTED,
            2 * EVICTED
        ),
        json!({
            "pods": EVICTED, "api_10th_accepted_s": tenth, "api_11th_accepted_s": eleventh,
            "api_last_accepted_s": accepted[accepted.len() - 1], "api_all_gone_s": api_gone,
            "drain_all_gone_s": drain_gone, "callbacks": 2 * EVICTED, "failed_prestop_hooks": hooks,
        }),
    );
}

/// Creates `DELETED` Pods from `spec` (name `many-<i>`), waits until they are ready, deletes them
/// with one request, and returns the seconds until the last was gone, with the followers.
async fn delete_together(
    pods: &Api<Pod>,
    spec: impl Fn(String) -> DemoPod,
) -> (f64, Vec<(String, LogFollower)>) {
    for i in 0..DELETED {
        pods.create(&PostParams::default(), &demo_pod(spec(format!("many-{i}"))))
            .await
            .unwrap_or_else(|e| panic!("create Pod many-{i}: {e}"));
    }
    let names = ready_pods(pods, DELETED, 3 * MINUTE).await;
    let followers = follow_all(pods, &names).await;
    let started = Instant::now();
    pods.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels(SELECTOR),
    )
    .await
    .expect("delete the Pods");
    let gone = all_gone(pods, &names, started, MASS_GRACE + 2 * MINUTE).await;
    (gone, followers)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_injected_pods_deleted_at_once_are_all_graceful_and_gone_long_before_the_same_without(
) {
    let node = node!("fifty_injected_pods_deleted_at_once_are_all_graceful_and_gone_long_before_the_same_without");
    let _node = NODE.write().await;
    let ns = injected_namespace(&node, "faults-many", &[]).await;
    let pods = ns.pods();
    let (with, followers) = delete_together(&pods, |name| {
        DemoPod::new(&name, &["/app/shell-app.sh"])
            .annotation("k8s-deputy.io/entrypoint", "wrap")
            .label("app", "many")
            .grace(MASS_GRACE)
    })
    .await;
    let bad = not_graceful(followers, "shell-app: clean exit").await;
    assert!(
        bad.is_empty(),
        "Pods that did not shut down through the relay: {bad:#?}"
    );
    let hooks = failed_hooks(&node, &ns).await;
    assert_eq!(hooks, 0, "FailedPreStopHook events");
    drop(ns);

    // The same app without k8s-deputy, under `sh -c "app; ..."` (the shell, PID 1, forwards
    // nothing): each waits out its grace period.
    let plain_ns = node.namespace("faults-many-plain", &[]).await;
    let plain_pods = plain_ns.pods();
    let (without, _) = delete_together(&plain_pods, |name| {
        DemoPod::new(
            &name,
            &[
                "/bin/sh",
                "-c",
                "/app/shell-app.sh; echo \"sh: the app exited with $?\"",
            ],
        )
        .label("app", "many")
        .label(INJECT_LABEL, "false")
        .grace(MASS_GRACE)
    })
    .await;
    assert!(
        without >= MASS_GRACE.as_secs_f64() - 1.0 && with + 5.0 < without,
        "{DELETED} Pods gone in {with:.1} s with k8s-deputy, {without:.1} s without"
    );
    figures::record(
        "faults",
        &format!(
            "{DELETED} Pods deleted with one request (grace {} s): with k8s-deputy all gone in \
             {with:.1} s, {DELETED} of {DELETED} through the relay, FailedPreStopHook 0; the same \
             app without it (sh -c) {without:.1} s",
            MASS_GRACE.as_secs()
        ),
        json!({
            "pods": DELETED, "grace_s": MASS_GRACE.as_secs(), "with_deputy_all_gone_s": with,
            "without_all_gone_s": without, "graceful": DELETED, "failed_prestop_hooks": hooks,
        }),
    );
}
