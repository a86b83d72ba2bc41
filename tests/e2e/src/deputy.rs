//! The deployed k8s-deputy, as the scenarios find it: the webhook's names in `deputy-system`
//! (as `manifests/overlays/local` deploys it), opted-in namespaces with the webhook answering for
//! them, the webhook's Pods and their readiness, and the API server's fail-open count for it.
//!
//! The stack is the one `scripts/e2e-deploy.sh` deploys (`harness.sh test` runs it first).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use crate::injection::{annotation, STATUS_ANNOTATION};
use crate::pods::{demo_pod, dry_run, DemoPod};
use crate::{metrics, poll, Node, TestNamespace};

/// Where k8s-deputy runs (`manifests/`).
pub const SYSTEM_NS: &str = "deputy-system";
/// Its Deployment, Service and MutatingWebhookConfiguration.
pub const WEBHOOK_NAME: &str = "deputy-webhook";
/// The label selecting its Pods.
pub const WEBHOOK_SELECTOR: &str = "app.kubernetes.io/name=deputy-webhook";
/// Its metrics port.
pub const METRICS_PORT: u16 = 8080;
/// The two entries of its MutatingWebhookConfiguration.
pub const ENTRIES: [&str; 2] = ["namespace.inject.k8s-deputy.io", "pod.inject.k8s-deputy.io"];
/// The label that opts a namespace in (`enabled`) or a Pod out (`"false"`).
pub const INJECT_LABEL: &str = "k8s-deputy.io/inject";
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
    let deployments: Api<Deployment> = Api::namespaced(node.client.clone(), SYSTEM_NS);
    if deployments
        .get_opt(WEBHOOK_NAME)
        .await
        .with_context(|| format!("read deployment {SYSTEM_NS}/{WEBHOOK_NAME}"))?
        .is_none()
    {
        bail!(
            "k8s-deputy is not deployed (no deployment {SYSTEM_NS}/{WEBHOOK_NAME}); \
             run `make e2e-deploy` first (`make e2e-test` does)"
        );
    }
    let pods: Api<Pod> = Api::namespaced(node.client.clone(), namespace);
    let probe = demo_pod(DemoPod::new("deputy-probe", &["/app/deputy-app"]));
    poll(
        "an available webhook replica and a dry-run Pod that comes back injected",
        Duration::from_secs(60),
        || async {
            if crate::available_replicas(node, SYSTEM_NS, WEBHOOK_NAME).await == 0 {
                return Ok(None);
            }
            let stored = pods.create(&dry_run(), &probe).await?;
            Ok(annotation(&stored, STATUS_ANNOTATION).map(|_| ()))
        },
    )
    .await
}

/// A namespace that opts in and enforces the `restricted` Pod Security Standard (with `extra`
/// labels too), once the webhook answers for it.
pub async fn injected_namespace(
    node: &Node,
    prefix: &str,
    extra: &[(&str, &str)],
) -> TestNamespace {
    let mut labels = INJECTED_RESTRICTED.to_vec();
    labels.extend_from_slice(extra);
    let ns = node.namespace(prefix, &labels).await;
    require_deputy(node, &ns.name)
        .await
        .expect("k8s-deputy is deployed and injects Pods in an opted-in namespace");
    ns
}

async fn list_webhook_pods(node: &Node) -> kube::Result<Vec<Pod>> {
    Api::<Pod>::namespaced(node.client.clone(), SYSTEM_NS)
        .list(&ListParams::default().labels(WEBHOOK_SELECTOR))
        .await
        .map(|l| l.items)
}

/// The webhook's Pods.
pub async fn webhook_pods(node: &Node) -> Vec<Pod> {
    list_webhook_pods(node)
        .await
        .expect("list the webhook's Pods")
}

/// The names of the webhook's Pods.
pub async fn webhook_pod_names(node: &Node) -> Vec<String> {
    webhook_pods(node)
        .await
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect()
}

/// Whether there are webhook Pods, none being deleted, and every one's Ready condition is `want`
/// (false when they cannot be listed).
pub async fn webhook_pods_ready(node: &Node, want: bool) -> bool {
    let pods = list_webhook_pods(node).await.unwrap_or_default();
    !pods.is_empty()
        && pods.iter().all(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
                .is_some_and(|c| c.status == "True");
            ready == want && p.metadata.deletion_timestamp.is_none()
        })
}

/// The API server's fail-open count (`apiserver_admission_webhook_fail_open_count`) for
/// k8s-deputy's two webhook entries.
pub async fn fail_open_count(node: &Node) -> f64 {
    let samples = metrics::api_server(node)
        .await
        .expect("the API server's /metrics");
    ENTRIES
        .iter()
        .map(|name| {
            metrics::sum(
                &samples,
                "apiserver_admission_webhook_fail_open_count",
                &[("name", name)],
            )
        })
        .sum::<f64>()
        + 0.0 // a sum of nothing is -0.0
}

/// The API server's histogram of its calls to k8s-deputy's namespace entry for Pod CREATEs
/// (`apiserver_admission_webhook_admission_duration_seconds`): the admission latency it saw.
pub async fn admission_histogram(node: &Node) -> metrics::Histogram {
    let samples = metrics::api_server(node)
        .await
        .expect("the API server's metrics");
    metrics::Histogram::from_samples(
        &samples,
        "apiserver_admission_webhook_admission_duration_seconds",
        &[
            ("name", ENTRIES[0]),
            ("type", "admit"),
            ("operation", "CREATE"),
        ],
    )
}
