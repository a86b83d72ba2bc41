//! A Pod's termination as the tests observe it: its container's log followed from its start to
//! its end (with the kubelet's timestamps), its deletion watched until it is gone (with the exit
//! code the API last held), and the kubelet's events about it.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures::{AsyncBufReadExt, StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, Event, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, LogParams, WatchEvent, WatchParams};

use crate::{poll, Node};

/// The relay's first line, written by `deputy-agent terminate` into the app's stdout.
pub const RELAY_ASKS: &str = "deputy-agent terminate: asking PID";
/// The relay's last line: it was still running when the app had exited, with status 0.
pub const RELAY_CLEAN: &str = "reported its app exited with status 0";

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

/// Waits (up to a minute) until the container's log contains `line` (the app registered), and
/// returns the log.
pub async fn wait_for_log(pods: &Api<Pod>, name: &str, line: &str) -> String {
    poll(
        &format!("{line:?} in the log of {name}"),
        crate::MINUTE,
        || async {
            let logs = pods.logs(name, &Default::default()).await?;
            Ok(logs.contains(line).then_some(logs))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

/// What one deletion showed: the API's view and the container's whole log.
#[derive(Debug)]
pub struct Graceful {
    /// The deletion as watched.
    pub deletion: Deletion,
    /// The log of container `app`, followed to its end.
    pub lines: Vec<LogLine>,
}

/// Deletes a running Pod while following its log, and watches it until it is gone.
pub async fn delete_following_log(pods: &Api<Pod>, name: &str, deadline: Duration) -> Graceful {
    let follower = LogFollower::start(pods, name)
        .await
        .expect("follow the log");
    let deletion = delete_and_watch(pods, name, deadline)
        .await
        .unwrap_or_else(|e| panic!("delete Pod {name}: {e:#}"));
    let lines = follower
        .finish(Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("the log of {name}: {e:#}"));
    Graceful { deletion, lines }
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
