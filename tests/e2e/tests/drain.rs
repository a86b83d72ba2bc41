//! No request dropped at termination: a Deployment of two replicas of an HTTP service behind a
//! ClusterIP Service, with clients sending requests through the Service from the node's network
//! namespace (one new connection per request, and over keep-alive connections), while (a) the
//! Deployment rolls and (b) one Pod is deleted. Every lost request is counted (refused, reset,
//! timed out, non-200), for five ways of running the same app:
//!
//! | case | what terminates the app |
//! |---|---|
//! | `plain` | its own SIGTERM handler, no k8s-deputy (what most teams do) |
//! | `prestop-sleep` | the same, after `preStop: sleep 5` (the usual fix) |
//! | `deputy-no-drain` | k8s-deputy's relay at once (`k8s-deputy.io/drain: 0s`) |
//! | `deputy-fixed` | k8s-deputy after a fixed drain (`k8s-deputy.io/drain: 5s`) |
//! | `deputy-adaptive` | k8s-deputy after the default adaptive drain (15 s max, 3 s quiet) |
//!
//! Both drains must lose nothing to the Pods they terminate in any run; a connect timeout whose
//! SYN the Service sent to a Pod that was not being terminated is not a termination loss, and is
//! recorded and printed, not asserted (see the check); `plain` and `deputy-no-drain` must lose
//! requests
//! (the negative controls: proof that the clients see a dropped request). `E2E_DRAIN_RUNS`
//! (default 3) sets the runs of the drain cases, `E2E_DRAIN_CONTROL_RUNS` (default 1) of the
//! others. Figures are recorded under the `drain` topic.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use deputy_e2e::deputy::{injected_namespace, INJECT_LABEL};
use deputy_e2e::figures;
use deputy_e2e::pods::DEMO;
use deputy_e2e::termination::{delete_and_watch, LogFollower};
use deputy_e2e::{poll, Node, TestNamespace, MINUTE, NODE_NETNS};
use serde_json::{json, Value};

/// One at a time: the load and the node's CPU are shared, and a figure must be this case's.
static ONE_CASE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How the app is run.
#[derive(Debug, Clone, Copy)]
struct Case {
    name: &'static str,
    /// Injected by k8s-deputy (the app then stops on its terminate request).
    deputy: bool,
    /// `k8s-deputy.io/drain` and `drain-quiet`, if set.
    drain: Option<&'static str>,
    /// A native `preStop: sleep` of this many seconds.
    prestop_sleep: Option<u64>,
    /// What the test asserts about lost requests.
    expect: Expect,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Not one lost, in every event of every run.
    Nothing,
    /// Some lost over the runs: the negative control.
    Losses,
    /// Reported only.
    Report,
}

fn runs(expect: Expect) -> usize {
    let (var, default) = match expect {
        Expect::Nothing => ("E2E_DRAIN_RUNS", 3),
        _ => ("E2E_DRAIN_CONTROL_RUNS", 1),
    };
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const APP_PORT: u16 = 8080;
const REPLICAS: usize = 2;

/// The Deployment and its Service.
fn manifests(case: &Case, namespace: &str) -> Value {
    let mut annotations = serde_json::Map::new();
    if let Some(drain) = case.drain {
        for (key, value) in drain.split(',').filter_map(|kv| kv.split_once('=')) {
            annotations.insert(format!("k8s-deputy.io/{key}"), value.into());
        }
    }
    let mut labels = serde_json::Map::new();
    labels.insert("app".into(), case.name.into());
    if !case.deputy {
        labels.insert(INJECT_LABEL.into(), "false".into());
    }
    let stop_on = if case.deputy { "terminate" } else { "sigterm" };
    let mut container = json!({
        "name": "app",
        "image": DEMO,
        "imagePullPolicy": "Never",
        "command": ["/app/http-app", "--listen", format!("0.0.0.0:{APP_PORT}"), "--on", stop_on],
        "ports": [{"containerPort": APP_PORT}],
        // Every 5 s: more often than the 3 s quiet period would hold the adaptive drain to its
        // maximum (the webhook warns about that).
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": APP_PORT}, "periodSeconds": 5},
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "capabilities": {"drop": ["ALL"]},
        },
    });
    if let Some(seconds) = case.prestop_sleep {
        container["lifecycle"] = json!({"preStop": {"sleep": {"seconds": seconds}}});
    }
    json!({"apiVersion": "v1", "kind": "List", "items": [
        {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": case.name, "namespace": namespace},
            "spec": {
                "replicas": REPLICAS,
                "selector": {"matchLabels": {"app": case.name}},
                "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
                "template": {
                    "metadata": {"labels": labels, "annotations": annotations},
                    "spec": {
                        "terminationGracePeriodSeconds": 30,
                        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [container],
                    },
                },
            },
        },
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": case.name, "namespace": namespace},
            "spec": {"selector": {"app": case.name}, "ports": [{"port": 80, "targetPort": APP_PORT}]},
        },
    ]})
}

/// One of the Deployment's Pods.
#[derive(Debug)]
struct PodRow {
    name: String,
    /// It has a deletion timestamp.
    terminating: bool,
    /// Its Pod IP (empty before one is assigned).
    ip: String,
}

/// The Deployment's Pods.
fn pods(node: &Node, ns: &str, app: &str) -> Vec<PodRow> {
    let out = node
        .kubectl_ok(&[
            "-n",
            ns,
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "json",
        ])
        .expect("list the Pods");
    let list: Value = serde_json::from_str(&out).expect("kubectl's JSON");
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    list["items"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|p| PodRow {
            name: text(&p["metadata"]["name"]),
            terminating: !p["metadata"]["deletionTimestamp"].is_null(),
            ip: text(&p["status"]["podIP"]),
        })
        .collect()
}

/// The Deployment's Pods by name, with their Pod IPs.
fn pod_ips(node: &Node, ns: &str, app: &str) -> std::collections::BTreeMap<String, String> {
    pods(node, ns, app)
        .into_iter()
        .map(|p| (p.name, p.ip))
        .collect()
}

/// The Pods of `before` gone from `after`: those the event terminated, by Pod IP.
fn terminated_in(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
) -> std::collections::BTreeMap<String, String> {
    before
        .iter()
        .filter(|(name, ip)| !after.contains_key(*name) && !ip.is_empty())
        .map(|(name, ip)| (ip.clone(), name.clone()))
        .collect()
}

/// Waits until the Deployment has exactly its replicas, all available, and no Pod terminating.
async fn settled(node: &Node, ns: &str, app: &str) {
    poll(
        &format!("deployment {app}: {REPLICAS} available replicas and nothing terminating"),
        2 * MINUTE,
        || async {
            let available = deputy_e2e::available_replicas(node, ns, app).await;
            let pods = pods(node, ns, app);
            let done = available == REPLICAS as i32
                && pods.len() == REPLICAS
                && pods.iter().all(|p| !p.terminating);
            Ok(done.then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// One client process in the node's network namespace; killed if dropped unfinished.
struct Client {
    child: Option<Child>,
    /// Its stderr lines so far.
    said: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Client {
    fn start(target: &str, mode: &str, workers: &str) -> Client {
        let child = Command::new("nsenter")
            .arg(format!("--net={NODE_NETNS}"))
            .arg(env!("CARGO_BIN_EXE_deputy-e2e-tool"))
            .args(["http-load", target, mode, workers, "10ms", "3m"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start deputy-e2e-tool http-load under nsenter");
        let mut child = child;
        let said: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
        let stderr = child.stderr.take().expect("piped");
        let sink = std::sync::Arc::clone(&said);
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().expect("not poisoned").push(line);
            }
        });
        Client {
            child: Some(child),
            said,
        }
    }

    /// The Pods its keep-alive connections reached so far, most used first.
    fn keepalive_pods(&self) -> Vec<String> {
        let mut counts = std::collections::BTreeMap::<String, usize>::new();
        for line in self.said.lock().expect("not poisoned").iter() {
            if let Some(pod) = line.strip_prefix("keep-alive connection answered by ") {
                *counts.entry(pod.to_owned()).or_default() += 1;
            }
        }
        let mut pods: Vec<_> = counts.into_iter().collect();
        pods.sort_by_key(|(_, n)| std::cmp::Reverse(*n));
        pods.into_iter().map(|(pod, _)| pod).collect()
    }

    /// Stops it (its stdin closes) and returns its summary.
    fn finish(mut self) -> Value {
        let mut child = self.child.take().expect("not finished yet");
        drop(child.stdin.take());
        let out = child.wait_with_output().expect("the client's summary");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "the client's summary {:?}: {e}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Both clients, for the length of `event` (which is given the Pods the keep-alive connections
/// reached); returns (close summary, keep-alive summary, the event's result).
async fn under_load<T, F: std::future::Future<Output = T>>(
    target: &str,
    event: impl FnOnce(Vec<String>) -> F,
) -> (Value, Value, T) {
    let close = Client::start(target, "close", "2");
    let keepalive = Client::start(target, "keepalive", "4");
    // Traffic flows before the event starts ...
    tokio::time::sleep(Duration::from_secs(1)).await;
    let result = event(keepalive.keepalive_pods()).await;
    // ... and after it ended, to catch what the last change lost.
    tokio::time::sleep(Duration::from_secs(1)).await;
    (close.finish(), keepalive.finish(), result)
}

/// Waits until the new Service answers through its ClusterIP from both Pods without a loss.
/// Until kube-proxy has programmed its endpoints, it rejects connections to a Service it
/// believes has none: a new Service's first moments, not a termination, so not measured.
async fn serving(target: &str) {
    poll(
        &format!("the Service {target} answering from {REPLICAS} Pods with nothing lost"),
        MINUTE,
        || async {
            let client = Client::start(target, "close", "1");
            tokio::time::sleep(Duration::from_millis(500)).await;
            let summary = client.finish();
            let backends = summary["backends"].as_object().map_or(0, |b| b.len());
            Ok((failed(&summary) == 0 && backends >= REPLICAS).then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

fn failed(summary: &Value) -> u64 {
    summary["failed"].as_u64().expect("a failed count")
}

/// What one event cost.
#[derive(Debug)]
struct EventFigures {
    event: &'static str,
    /// The deleted Pod (the deletion event).
    victim: Option<String>,
    close: Value,
    keepalive: Value,
    /// Delete → Pod gone (the deletion event).
    gone_s: Option<f64>,
    /// What the drain logged it waited (the deletion event of injected Pods).
    drained_s: Option<f64>,
    /// The Pods the event terminated: Pod IP → name.
    terminated: std::collections::BTreeMap<String, String>,
}

impl EventFigures {
    /// Timeouts of `summary` whose SYN went to a Pod this event did not terminate (a known Pod
    /// IP outside `terminated`): lost, but not at termination.
    fn timeouts_elsewhere(&self, summary: &Value) -> u64 {
        summary["timeouts_to"]
            .as_object()
            .map(|to| {
                to.iter()
                    .filter(|(ip, _)| *ip != "unknown" && !self.terminated.contains_key(*ip))
                    .filter_map(|(_, n)| n.as_u64())
                    .sum()
            })
            .unwrap_or(0)
    }
}

/// "drained for 3.4s" / "drained for 5s" / "drained for 850ms" in the agent's log line.
fn drained_seconds(line: &str) -> Option<f64> {
    let rest = line.split("drained for ").nth(1)?;
    let value = rest.split([' ', ':', ';']).next()?;
    if let Some(ms) = value.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|v| v / 1000.0);
    }
    value.strip_suffix('s')?.parse().ok()
}

async fn run_case(case: Case) {
    let Some(node) = Node::from_env(case.name).await else {
        return;
    };
    let _one = ONE_CASE.lock().await;
    let ns: TestNamespace = injected_namespace(&node, "drain", &[]).await;
    node.kubectl_with_input(
        &["apply", "-f", "-"],
        &manifests(&case, &ns.name).to_string(),
    )
    .and_then(|out| {
        anyhow::ensure!(out.success, "kubectl apply: {}", out.stderr);
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    settled(&node, &ns.name, case.name).await;
    let ip = node
        .kubectl_ok(&[
            "-n",
            &ns.name,
            "get",
            "service",
            case.name,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .expect("the Service's ClusterIP");
    let target = format!("{}:80", ip.trim());
    serving(&target).await;
    let pod_api = ns.pods();
    let mut figures_of_runs = Vec::new();
    for run in 0..runs(case.expect) {
        // (a) A rolling update: every Pod replaced, one at a time.
        let before = pod_ips(&node, &ns.name, case.name);
        let (close, keepalive, ()) = under_load(&target, |_| async {
            node.kubectl_ok(&[
                "-n",
                &ns.name,
                "rollout",
                "restart",
                "deployment",
                case.name,
            ])
            .expect("kubectl rollout restart");
            // The new ReplicaSet first, then the last old Pod gone.
            tokio::time::sleep(Duration::from_secs(1)).await;
            settled(&node, &ns.name, case.name).await;
        })
        .await;
        figures_of_runs.push((
            run,
            EventFigures {
                event: "rollout",
                victim: None,
                close,
                keepalive,
                gone_s: None,
                drained_s: None,
                terminated: terminated_in(&before, &pod_ips(&node, &ns.name, case.name)),
            },
        ));
        // (b) One Pod deleted: one that a keep-alive connection reached (the new-connection
        // client reaches both).
        let before = pod_ips(&node, &ns.name, case.name);
        let (close, keepalive, (victim, deletion, lines)) = under_load(&target, |reached| async {
            let live: Vec<String> = pods(&node, &ns.name, case.name)
                .into_iter()
                .map(|p| p.name)
                .collect();
            let victim = reached
                .into_iter()
                .find(|pod| live.contains(pod))
                .or_else(|| live.first().cloned())
                .expect("a Pod");
            let logs = LogFollower::start(&pod_api, &victim)
                .await
                .expect("follow the Pod's log");
            let deletion = delete_and_watch(&pod_api, &victim, MINUTE)
                .await
                .unwrap_or_else(|e| panic!("{e:#}"));
            let lines = logs.finish(MINUTE).await.unwrap_or_default();
            settled(&node, &ns.name, case.name).await;
            (victim, deletion, lines)
        })
        .await;
        let drained_s = lines.iter().find_map(|l| drained_seconds(&l.text));
        figures_of_runs.push((
            run,
            EventFigures {
                event: "delete",
                victim: Some(victim),
                close,
                keepalive,
                gone_s: Some(deletion.gone_after.as_secs_f64()),
                drained_s,
                terminated: terminated_in(&before, &pod_ips(&node, &ns.name, case.name)),
            },
        ));
    }
    report_and_check(&case, &figures_of_runs);
}

fn report_and_check(case: &Case, events: &[(usize, EventFigures)]) {
    let mut total_failed = 0;
    let mut total_requests = 0;
    let mut rows = Vec::new();
    for (run, e) in events {
        let (fc, fk) = (failed(&e.close), failed(&e.keepalive));
        total_failed += fc + fk;
        total_requests += e.close["requests"].as_u64().unwrap_or(0)
            + e.keepalive["requests"].as_u64().unwrap_or(0);
        rows.push(json!({
            "run": run, "event": e.event,
            "failed_close": fc, "failed_keepalive": fk,
            "requests_close": e.close["requests"], "requests_keepalive": e.keepalive["requests"],
            "recovered_by_retry": e.keepalive["recovered_by_retry"],
            "failures_close": e.close["failures"], "failures_keepalive": e.keepalive["failures"],
            "errors": [e.close["errors"].clone(), e.keepalive["errors"].clone()],
            "gone_s": e.gone_s, "drained_s": e.drained_s,
            "terminated": e.terminated,
            "timeouts_to": [e.close["timeouts_to"].clone(), e.keepalive["timeouts_to"].clone()],
            "timeouts_elsewhere": e.timeouts_elsewhere(&e.close) + e.timeouts_elsewhere(&e.keepalive),
        }));
        // The Pods the timeouts are told apart by are known: every old Pod in a rollout, the
        // deleted one in a deletion (else a timeout could be excused for want of a name).
        let expected = match &e.victim {
            Some(victim) => e.terminated.values().any(|name| name == victim),
            None => e.terminated.len() == REPLICAS,
        };
        assert!(
            expected,
            "{}: run {run} {}: the Pods it terminated were not all found: {:?}",
            case.name, e.event, e.terminated
        );
        // The traffic went through the Service: more than one Pod answered each client, and
        // the deleted Pod was serving both when it was deleted.
        for summary in [&e.close, &e.keepalive] {
            let backends = summary["backends"].as_object().cloned().unwrap_or_default();
            assert!(
                backends.len() >= 2,
                "{}: run {run} {}: answered by {} Pods: {summary}",
                case.name,
                e.event,
                backends.len()
            );
            if let Some(victim) = &e.victim {
                assert!(
                    backends.contains_key(victim),
                    "{}: run {run}: the deleted Pod {victim} served no request of {summary}",
                    case.name
                );
            }
            assert!(
                summary["requests"].as_u64().unwrap_or(0) >= 100,
                "{}: too little traffic: {summary}",
                case.name
            );
        }
    }
    let mean = |f: fn(&EventFigures) -> Option<f64>| {
        let v: Vec<f64> = events.iter().filter_map(|(_, e)| f(e)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let gone = mean(|e| e.gone_s);
    let drained = mean(|e| e.drained_s);
    let per_event: Vec<String> = events
        .iter()
        .map(|(run, e)| {
            format!(
                "run {run} {}: {}+{}",
                e.event,
                failed(&e.close),
                failed(&e.keepalive)
            )
        })
        .collect();
    figures::record(
        "drain",
        &format!(
            "{}: {total_failed} of {total_requests} requests failed over {} runs (new connection + keep-alive per event: {}); delete -> gone {}; drain waited {}",
            case.name,
            events.len() / 2,
            per_event.join(", "),
            gone.map_or("-".into(), |s| format!("{s:.1} s")),
            drained.map_or("-".into(), |s| format!("{s:.1} s")),
        ),
        json!({
            "case": case.name, "runs": events.len() / 2, "failed": total_failed,
            "requests": total_requests, "gone_mean_s": gone, "drained_mean_s": drained, "events": rows,
        }),
    );
    match case.expect {
        Expect::Nothing => {
            // What a drain exists to prevent: a request the terminating Pod refuses, resets,
            // fails, or never answers. Asserted 0 in every event of every run. A timeout counts
            // unless its SYN provably went to a Pod the event did not terminate (the connection
            // tracking entry names the DNAT's choice): that one is lost elsewhere (a starting or
            // a surviving Pod), so it is printed and recorded, and is no termination loss.
            for (run, e) in events {
                let elsewhere = e.timeouts_elsewhere(&e.close) + e.timeouts_elsewhere(&e.keepalive);
                assert_eq!(
                    failed(&e.close) + failed(&e.keepalive) - elsewhere,
                    0,
                    "{}: run {run}, {}: requests lost to the terminated Pods {:?}:\nnew connection: {}\nkeep-alive: {}",
                    case.name,
                    e.event,
                    e.terminated,
                    e.close,
                    e.keepalive
                );
                if elsewhere > 0 {
                    eprintln!(
                        "drain: {}: run {run}, {}: {elsewhere} connect timeout(s) to Pods this event did not terminate ({:?} were), not a termination loss:\nnew connection: {}\nkeep-alive: {}",
                        case.name, e.event, e.terminated, e.close["errors"], e.keepalive["errors"]
                    );
                }
            }
        }
        Expect::Losses => assert!(
            total_failed > 0,
            "{}: the negative control lost nothing over {} events, so the test could not have seen a dropped request",
            case.name,
            events.len()
        ),
        Expect::Report => {}
    }
}

#[tokio::test]
async fn plain_sigterm_handler_loses_requests() {
    run_case(Case {
        name: "plain",
        deputy: false,
        drain: None,
        prestop_sleep: None,
        expect: Expect::Losses,
    })
    .await;
}

#[tokio::test]
async fn prestop_sleep_with_sigterm_handler_is_reported() {
    run_case(Case {
        name: "prestop-sleep",
        deputy: false,
        drain: None,
        prestop_sleep: Some(5),
        expect: Expect::Report,
    })
    .await;
}

#[tokio::test]
async fn deputy_without_drain_loses_requests() {
    run_case(Case {
        name: "deputy-no-drain",
        deputy: true,
        drain: Some("drain=0s"),
        prestop_sleep: None,
        expect: Expect::Losses,
    })
    .await;
}

#[tokio::test]
async fn deputy_with_a_fixed_drain_loses_nothing() {
    run_case(Case {
        name: "deputy-fixed",
        deputy: true,
        drain: Some("drain=5s"),
        prestop_sleep: None,
        expect: Expect::Nothing,
    })
    .await;
}

#[tokio::test]
async fn deputy_with_the_default_adaptive_drain_loses_nothing() {
    run_case(Case {
        name: "deputy-adaptive",
        deputy: true,
        drain: None,
        prestop_sleep: None,
        expect: Expect::Nothing,
    })
    .await;
}

#[test]
fn drain_durations_are_read_from_the_agents_line() {
    assert_eq!(
        drained_seconds("deputy-agent terminate: drained for 3.4s: no new"),
        Some(3.4)
    );
    assert_eq!(
        drained_seconds("deputy-agent terminate: drained for 5s (fixed); 3 new"),
        Some(5.0)
    );
    assert_eq!(drained_seconds("drained for 850ms; 0 new"), Some(0.85));
    assert_eq!(drained_seconds("asking PID 7"), None);
}
