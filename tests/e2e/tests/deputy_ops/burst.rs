//! The webhook under faults during a creation burst (issue 13, part 2): at least 300 Pods created
//! as fast as the API server takes them (8 requests in flight) while the webhook's Deployment is
//! rolled, while one replica is SIGKILLed, and while the API server itself restarts. Each Pod is
//! counted as mutated, admitted unmutated (fail-open) or rejected; the API server's own admission
//! latency histogram and the client's round trips are recorded per fault.
//!
//! The Pods select a node label nothing has, so they stay Pending: admission is what is measured,
//! and the kubelet is spared (it runs at most 110 Pods).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deputy_e2e::deputy::{
    admission_histogram, fail_open_count, injected_namespace, webhook_pods, webhook_pods_ready,
    SYSTEM_NS, WEBHOOK_NAME,
};
use deputy_e2e::figures;
use deputy_e2e::injection::is_injected;
use deputy_e2e::metrics::Histogram;
use deputy_e2e::pods::{demo_pod, DemoPod};
use deputy_e2e::{node, poll, Node, MINUTE};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::WEBHOOK;

/// Pods created at least, whatever the fault's length.
const AT_LEAST: usize = 300;
/// Pods created at most (the burst stops here even if the fault still runs).
const AT_MOST: usize = 1500;
/// Creations in flight at once.
const IN_FLIGHT: usize = 8;

/// What one burst saw.
#[derive(Debug, Default)]
struct Counts {
    created: usize,
    mutated: usize,
    unmutated: usize,
    rejected: Vec<String>,
    /// Requests that did not reach an API server (it was restarting); retried.
    unreachable: usize,
    /// Client round trips of the requests that created a Pod.
    round_trips: Vec<Duration>,
}

/// The fault injected during a burst.
#[derive(Debug, Clone, Copy)]
enum Fault {
    RolloutRestart,
    KillReplica,
    RestartApiServer,
}

/// A Pending Pod: the demo Pod (restricted-compliant, so it is injected) on a node nobody has.
fn pending_pod(name: &str) -> Pod {
    let mut pod = demo_pod(DemoPod::new(name, &["/app/deputy-app"]));
    let spec = pod.spec.as_mut().expect("a spec");
    spec.node_selector = Some([("k8s-deputy.io/e2e-nowhere".to_owned(), "true".to_owned())].into());
    pod
}

/// Creates one Pod, retrying while no API server answers; classifies what came back.
async fn create_one(pods: &Api<Pod>, name: String) -> Outcome {
    let pod = pending_pod(&name);
    let mut unreachable = 0;
    let started = Instant::now();
    loop {
        let attempt = Instant::now();
        match pods.create(&PostParams::default(), &pod).await {
            Ok(stored) => {
                return Outcome::Created {
                    mutated: is_injected(&stored),
                    round_trip: attempt.elapsed(),
                    unreachable,
                }
            }
            // Created by an attempt whose answer was lost when the API server went away.
            Err(kube::Error::Api(e)) if e.code == 409 && unreachable > 0 => {
                if let Ok(stored) = pods.get(&name).await {
                    return Outcome::Created {
                        mutated: is_injected(&stored),
                        round_trip: attempt.elapsed(),
                        unreachable,
                    };
                }
            }
            Err(kube::Error::Api(e)) => {
                return Outcome::Rejected(format!("{name}: {} {}", e.code, e.message))
            }
            Err(e) if started.elapsed() < 2 * MINUTE => {
                let _ = e;
                unreachable += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Outcome::Rejected(format!("{name}: no API server for 2 min: {e}")),
        }
    }
}

enum Outcome {
    Created {
        mutated: bool,
        round_trip: Duration,
        unreachable: usize,
    },
    Rejected(String),
}

/// Creates Pods until `done` is set and at least [`AT_LEAST`] exist (at most [`AT_MOST`]).
async fn burst(pods: Api<Pod>, done: Arc<AtomicBool>) -> Counts {
    let names = (0..AT_MOST).map(|i| format!("burst-{i}"));
    let stream = futures::stream::iter(names)
        .take_while(|name| {
            let i: usize = name["burst-".len()..].parse().unwrap_or(0);
            std::future::ready(i < AT_LEAST || !done.load(Ordering::SeqCst))
        })
        .map(|name| create_one(&pods, name))
        .buffer_unordered(IN_FLIGHT);
    let outcomes: Vec<Outcome> = stream.collect().await;
    let mut counts = Counts::default();
    for outcome in outcomes {
        match outcome {
            Outcome::Created {
                mutated,
                round_trip,
                unreachable,
            } => {
                counts.created += 1;
                if mutated {
                    counts.mutated += 1;
                } else {
                    counts.unmutated += 1;
                }
                counts.round_trips.push(round_trip);
                counts.unreachable += unreachable;
            }
            Outcome::Rejected(why) => counts.rejected.push(why),
        }
    }
    counts
}

/// The webhook's Pods, not being deleted, with their containers' restart counts summed.
async fn restarts(node: &Node) -> i32 {
    webhook_pods(node)
        .await
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .map(|c| c.restart_count)
        .sum()
}

/// The host PID of the webhook process of the Pod with this UID (cgroup v1 and v2 paths both
/// name the Pod's UID, with `-` or `_`).
fn webhook_process(pod_uid: &str) -> Option<i32> {
    let uid_forms = [pod_uid.to_owned(), pod_uid.replace('-', "_")];
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            if comm.trim() != "deputy-webhook" {
                return None;
            }
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).ok()?;
            uid_forms
                .iter()
                .any(|u| cgroup.contains(u.as_str()))
                .then_some(pid)
        })
}

/// Runs the fault; returns what it did, in words.
async fn inject(node: &Node, fault: Fault) -> String {
    match fault {
        Fault::RolloutRestart => {
            let node = node.clone();
            tokio::task::spawn_blocking(move || {
                let target = format!("deployment/{WEBHOOK_NAME}");
                node.kubectl_ok(&["-n", SYSTEM_NS, "rollout", "restart", &target])
                    .expect("kubectl rollout restart");
                let started = Instant::now();
                node.kubectl_ok(&[
                    "-n",
                    SYSTEM_NS,
                    "rollout",
                    "status",
                    &target,
                    "--timeout=180s",
                ])
                .expect("the rollout completes");
                format!(
                    "rollout restart, complete after {:.1} s",
                    started.elapsed().as_secs_f64()
                )
            })
            .await
            .expect("the rollout task")
        }
        Fault::KillReplica => {
            let victim = webhook_pods(node)
                .await
                .into_iter()
                .next()
                .expect("a webhook Pod");
            let name = victim.metadata.name.clone().unwrap_or_default();
            let uid = victim.metadata.uid.clone().expect("a stored Pod has a UID");
            let pid = webhook_process(&uid)
                .unwrap_or_else(|| panic!("no deputy-webhook process in Pod {name} ({uid})"));
            let before = restarts(node).await;
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -KILL {pid}");
            let started = Instant::now();
            poll(
                "the killed replica restarted and ready",
                2 * MINUTE,
                || async {
                    Ok(
                        (restarts(node).await > before && webhook_pods_ready(node, true).await)
                            .then_some(()),
                    )
                },
            )
            .await
            .expect("the kubelet restarts the killed container");
            format!(
                "SIGKILL to {name}'s process (host PID {pid}), restarted and ready after {:.1} s",
                started.elapsed().as_secs_f64()
            )
        }
        Fault::RestartApiServer => {
            let node = node.clone();
            tokio::task::spawn_blocking(move || {
                node.restart_daemon("kube-apiserver", Duration::from_secs(2))
                    .expect("the API server restarts")
            })
            .await
            .expect("the restart task")
        }
    }
}

fn percentile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

async fn run_burst(fault: Fault, prefix: &str) {
    let node = Node::from_env(prefix).await.expect("checked by the caller");
    let ns = injected_namespace(&node, prefix, &[]).await;
    let api_before = admission_histogram(&node).await;
    let fail_open_before = fail_open_count(&node).await;
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let creating = tokio::spawn(burst(ns.pods(), done.clone()));
    // Let the burst reach speed, then break something under it.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let what = inject(&node, fault).await;
    done.store(true, Ordering::SeqCst);
    let mut counts = creating.await.expect("the burst task");
    let seconds = started.elapsed().as_secs_f64();
    // A restarted API server starts its metrics from zero: then everything it counted is new.
    let api_after = admission_histogram(&node).await;
    let api: Histogram = if api_after.count >= api_before.count {
        api_after.since(&api_before)
    } else {
        api_after
    };
    let fail_open = fail_open_count(&node).await;
    let fail_open_delta = if fail_open >= fail_open_before {
        fail_open - fail_open_before
    } else {
        fail_open
    };
    counts.round_trips.sort();
    let (p50, p99, max) = (
        percentile(&counts.round_trips, 0.5),
        percentile(&counts.round_trips, 0.99),
        percentile(&counts.round_trips, 1.0),
    );
    let api_mean = api.mean().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3);
    let api_p99 = api.quantile_bound(0.99).map_or(f64::NAN, |s| s * 1e3);
    figures::record(
        "burst",
        &format!(
            "{fault:?} ({what}): {} Pods created in {seconds:.1} s, {} mutated, {} admitted \
             unmutated, {} rejected, {} requests retried while no API server answered; \
             fail-open count +{fail_open_delta}; client round trip p50 {p50:.1} ms, p99 {p99:.1} \
             ms, max {max:.1} ms; API server's webhook latency over {} calls: mean {api_mean:.1} \
             ms, p99 <= {api_p99} ms",
            counts.created,
            counts.mutated,
            counts.unmutated,
            counts.rejected.len(),
            counts.unreachable,
            api.count,
        ),
        json!({
            "fault": format!("{fault:?}"), "what": what, "created": counts.created,
            "mutated": counts.mutated, "unmutated": counts.unmutated,
            "rejected": counts.rejected.len(), "unreachable_retried": counts.unreachable,
            "fail_open": fail_open_delta, "seconds": seconds, "round_trip_p50_ms": p50,
            "round_trip_p99_ms": p99, "round_trip_max_ms": max, "api_calls": api.count,
            "api_mean_ms": api_mean, "api_p99_bound_ms": api_p99,
        }),
    );
    assert!(counts.created >= AT_LEAST, "{counts:?}");
    assert!(
        counts.rejected.is_empty(),
        "{fault:?}: rejected Pods: {:?}",
        counts.rejected
    );
    if let Fault::RolloutRestart = fault {
        assert_eq!(
            counts.unmutated, 0,
            "a rolling restart admits nothing unmutated (readiness, the PDB and the preStop)"
        );
    }
    // The webhook serves again as deployed before the next test takes its lock.
    poll("the webhook's replicas ready", 2 * MINUTE, || async {
        Ok(webhook_pods_ready(&node, true).await.then_some(()))
    })
    .await
    .expect("ready again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_burst_during_a_webhook_rollout_is_all_mutated_and_none_rejected() {
    let _ = node!("a_creation_burst_during_a_webhook_rollout_is_all_mutated_and_none_rejected");
    let _webhook = WEBHOOK.write().await;
    run_burst(Fault::RolloutRestart, "ops-burst-roll").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_burst_while_a_replica_is_sigkilled_rejects_none() {
    let _ = node!("a_creation_burst_while_a_replica_is_sigkilled_rejects_none");
    let _webhook = WEBHOOK.write().await;
    run_burst(Fault::KillReplica, "ops-burst-kill").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_burst_across_an_api_server_restart_rejects_none() {
    let _ = node!("a_creation_burst_across_an_api_server_restart_rejects_none");
    let _webhook = WEBHOOK.write().await;
    run_burst(Fault::RestartApiServer, "ops-burst-api").await;
}
