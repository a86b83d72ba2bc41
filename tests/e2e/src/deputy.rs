//! Helpers for the k8s-deputy scenarios (`tests/deputy.rs`): the demo image's Pods, waiting for
//! the deployed webhook, following a container's log across its termination, and deleting a Pod
//! while watching it until it is gone.
//!
//! The stack is the one `scripts/e2e-deploy.sh` deploys (`harness.sh test` runs it first).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, LogParams, PostParams, WatchEvent, WatchParams};
use serde_json::{json, Value};

use crate::{poll, Node};

/// The demo image (`scripts/e2e-deploy.sh`): busybox in `/bin`, `/app/deputy-app`,
/// `/app/julia-like`, `/app/shell-app.sh`; user 65532; `/var/run` is a symlink to `/run`.
pub const DEMO: &str = "localhost/deputy-demo:e2e";
/// The label that opts a namespace in (`enabled`) or a Pod out (`"false"`).
pub const INJECT_LABEL: &str = "k8s-deputy.io/inject";
/// The annotation the webhook writes on every Pod it injects.
pub const STATUS_ANNOTATION: &str = "k8s-deputy.io/status";
/// Labels of a namespace that opts in and enforces the `restricted` Pod Security Standard.
pub const INJECTED_RESTRICTED: &[(&str, &str)] = &[
    (INJECT_LABEL, "enabled"),
    ("pod-security.kubernetes.io/enforce", "restricted"),
];

/// Fails unless k8s-deputy is deployed: the webhook's Deployment exists, has an available
/// replica, and a Pod created with a server-side dry run in `namespace` (which must opt in) comes
/// back injected.
///
/// Waits for the last two: a test that made the replicas unready (or restarted them) leaves the
/// Deployment's available count behind the Pods' own Ready condition for a moment.
pub async fn require_deputy(node: &Node, namespace: &str) -> Result<()> {
    let deployments: Api<Deployment> = Api::namespaced(node.client.clone(), "deputy-system");
    if deployments
        .get_opt("deputy-webhook")
        .await
        .context("read deployment deputy-system/deputy-webhook")?
        .is_none()
    {
        bail!(
            "k8s-deputy is not deployed (no deployment deputy-system/deputy-webhook); \
             run `make e2e-deploy` first (`make e2e-test` does)"
        );
    }
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), namespace);
    let probe = demo_pod(DemoPod::new("deputy-probe", &["/app/deputy-app"]));
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    poll(
        "an available webhook replica and a dry-run Pod that comes back injected",
        Duration::from_secs(60),
        || async {
            if crate::available_replicas(node, "deputy-system", "deputy-webhook").await == 0 {
                return Ok(None);
            }
            let stored = pods.create(&dry_run, &probe).await?;
            Ok(annotation(&stored, STATUS_ANNOTATION).map(|_| ()))
        },
    )
    .await
}

/// A Pod of the demo image, restricted-PSS compliant with a read-only root filesystem.
#[derive(Debug, Clone)]
pub struct DemoPod {
    /// The Pod's name; its one container is `app`.
    pub name: String,
    /// `command` of the container.
    pub command: Vec<String>,
    /// `args` of the container.
    pub args: Vec<String>,
    /// `terminationGracePeriodSeconds`.
    pub grace: Duration,
    /// Pod annotations.
    pub annotations: Vec<(String, String)>,
    /// Pod labels.
    pub labels: Vec<(String, String)>,
}

impl DemoPod {
    /// A Pod running `command`, grace 30 s, no annotations.
    pub fn new(name: &str, command: &[&str]) -> DemoPod {
        DemoPod {
            name: name.to_owned(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            grace: Duration::from_secs(30),
            annotations: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// With these container `args`.
    pub fn args(mut self, args: &[&str]) -> DemoPod {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// With this grace period.
    pub fn grace(mut self, grace: Duration) -> DemoPod {
        self.grace = grace;
        self
    }

    /// With one more annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> DemoPod {
        self.annotations.push((key.to_owned(), value.to_owned()));
        self
    }

    /// With one more label.
    pub fn label(mut self, key: &str, value: &str) -> DemoPod {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// The Pod manifest, written as a user would.
pub fn demo_pod(spec: DemoPod) -> Pod {
    let map = |pairs: &[(String, String)]| -> Value {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    crate::pod(json!({
        "metadata": {
            "name": spec.name,
            "annotations": map(&spec.annotations),
            "labels": map(&spec.labels),
        },
        "spec": {
            "terminationGracePeriodSeconds": spec.grace.as_secs(),
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app",
                "image": DEMO,
                "imagePullPolicy": "Never",
                "command": spec.command,
                "args": spec.args,
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    }))
}

/// A Pod annotation's value.
pub fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// One log line with the kubelet's timestamp.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// When the container runtime read it.
    pub at: Timestamp,
    /// The line without its timestamp.
    pub text: String,
}

/// A container's log, followed from its start until the container exits (the stream ends) — so
/// it is complete even when the Pod is gone a moment later.
#[derive(Debug)]
pub struct LogFollower {
    task: tokio::task::JoinHandle<Result<Vec<LogLine>>>,
}

impl LogFollower {
    /// Starts following the logs of the Pod's only container (which must be running).
    pub async fn start(pods: &Api<Pod>, name: &str) -> Result<LogFollower> {
        let params = LogParams {
            follow: true,
            timestamps: true,
            ..LogParams::default()
        };
        let stream = pods
            .log_stream(name, &params)
            .await
            .with_context(|| format!("cannot follow the logs of Pod {name}"))?;
        let task = tokio::spawn(async move {
            let mut lines = stream.lines();
            let mut out = Vec::new();
            while let Some(line) = lines.try_next().await? {
                let (at, text) = line.split_once(' ').unwrap_or((line.as_str(), ""));
                let at: Timestamp = match at.parse() {
                    Ok(at) => at,
                    // The kubelet read the log to its end, then asked the runtime whether the
                    // container still runs; it had already been removed (the Pod is gone), and
                    // the kubelet writes that error into the stream instead of just ending it.
                    Err(_) if line.starts_with("rpc error: code = NotFound") => break,
                    Err(e) => {
                        return Err(e).with_context(|| format!("a log timestamp in {line:?}"))
                    }
                };
                out.push(LogLine {
                    at,
                    text: text.to_owned(),
                });
            }
            Ok(out)
        });
        Ok(LogFollower { task })
    }

    /// Waits (up to `deadline`) for the container's log to end and returns every line.
    pub async fn finish(self, deadline: Duration) -> Result<Vec<LogLine>> {
        tokio::time::timeout(deadline, self.task)
            .await
            .context("the log stream did not end")?
            .context("the log follower panicked")?
    }
}

/// What a Pod's deletion looked like from the API.
#[derive(Debug, Clone)]
pub struct Deletion {
    /// From the DELETE request to the watch's DELETED event.
    pub gone_after: Duration,
    /// When the DELETE request was sent.
    pub deleted_at: Timestamp,
    /// The last status the API held for container `app` showing it terminated: exit code.
    pub exit_code: Option<i32>,
    /// ... and reason (`Completed`, `Error`, ...).
    pub reason: Option<String>,
}

/// Deletes the Pod (with its own grace period) and watches it until it is gone, recording the
/// exit code of container `app` from the last status before the DELETED event.
pub async fn delete_and_watch(pods: &Api<Pod>, name: &str, deadline: Duration) -> Result<Deletion> {
    let current = pods.get(name).await?;
    let version = current
        .metadata
        .resource_version
        .clone()
        .context("a stored Pod has a resourceVersion")?;
    let params = WatchParams::default()
        .fields(&format!("metadata.name={name}"))
        .timeout(
            u32::try_from(deadline.as_secs())
                .unwrap_or(u32::MAX)
                .max(10)
                + 5,
        );
    let mut events = pods.watch(&params, &version).await?.boxed();
    let deleted_at = Timestamp::now();
    let start = Instant::now();
    pods.delete(name, &DeleteParams::default()).await?;
    let mut exit_code = None;
    let mut reason = None;
    let watch = async {
        while let Some(event) = events.try_next().await? {
            let (pod, gone) = match event {
                WatchEvent::Modified(pod) => (pod, false),
                WatchEvent::Deleted(pod) => (pod, true),
                WatchEvent::Added(pod) => (pod, false),
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(e) => bail!("watching Pod {name}: {e:?}"),
            };
            if let Some(terminated) = terminated_state(pod, "app") {
                exit_code = Some(terminated.exit_code);
                reason = terminated.reason;
            }
            if gone {
                return Ok(start.elapsed());
            }
        }
        bail!("the watch of Pod {name} ended before it was deleted")
    };
    let gone_after = tokio::time::timeout(deadline, watch)
        .await
        .with_context(|| format!("Pod {name} was not gone within {deadline:?}"))??;
    Ok(Deletion {
        gone_after,
        deleted_at,
        exit_code,
        reason,
    })
}

/// The `terminated` state of a container of the Pod, if the API holds one.
pub fn terminated_state(pod: Pod, container: &str) -> Option<ContainerStateTerminated> {
    pod.status
        .and_then(|s| s.container_statuses)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == container)
        .and_then(|c| c.state)
        .and_then(|s| s.terminated)
}

/// The reasons of the events recorded about a Pod, oldest first.
pub async fn pod_event_reasons(node: &Node, namespace: &str, pod: &str) -> Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(node.client.clone(), namespace);
    let list = events
        .list(&ListParams::default().fields(&format!("involvedObject.name={pod}")))
        .await?;
    Ok(list.items.into_iter().filter_map(|e| e.reason).collect())
}

/// The kubelet's events about a deleted Pod, once they include `Killing` (emitted when it
/// stops the container, before the preStop hook runs): a `FailedPreStopHook` would be recorded
/// by the same kubelet, in order, after it.
pub async fn termination_events(node: &Node, namespace: &str, pod: &str) -> Result<Vec<String>> {
    poll(
        &format!("the Killing event of Pod {pod}"),
        Duration::from_secs(20),
        || async {
            let reasons = pod_event_reasons(node, namespace, pod).await?;
            Ok(reasons.iter().any(|r| r == "Killing").then_some(reasons))
        },
    )
    .await
}

/// Seconds from `from` to `to` (negative when `to` is earlier).
pub fn seconds_between(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_nanosecond() - from.as_nanosecond()) as f64 / 1e9
}

/// Index of the first log line containing `needle`.
pub fn line_index(lines: &[LogLine], needle: &str) -> Option<usize> {
    lines.iter().position(|l| l.text.contains(needle))
}

/// The lines, one per row, for assertion messages.
pub fn show(lines: &[LogLine]) -> String {
    lines
        .iter()
        .map(|l| format!("  {} {}", l.at, l.text))
        .collect::<Vec<_>>()
        .join("\n")
}
