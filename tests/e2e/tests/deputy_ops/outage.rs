//! Scenario 7: the webhook down. With no replica left, Pods are admitted unmutated
//! (`failurePolicy: Ignore`) and the API server counts each as a fail-open; the webhook is
//! restored afterwards, also when the test fails.

use std::time::Instant;

use deputy_e2e::deputy::{
    fail_open_count, injected_namespace, require_deputy, webhook_pod_names, SYSTEM_NS, WEBHOOK_NAME,
};
use deputy_e2e::figures;
use deputy_e2e::injection::{container, init_names, is_injected, touched_by_deputy};
use deputy_e2e::pods::{demo_pod, dry_run, DemoPod};
use deputy_e2e::{node, poll, Node, MINUTE};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

use crate::WEBHOOK;

/// The webhook's Deployment, restored to 2 ready replicas serving mutations when dropped (also
/// when the test fails).
struct RestoreWebhook<'a>(&'a Node);

impl RestoreWebhook<'_> {
    fn scale(&self, replicas: u32) {
        self.0
            .kubectl_ok(&[
                "-n",
                SYSTEM_NS,
                "scale",
                &format!("deployment/{WEBHOOK_NAME}"),
                &format!("--replicas={replicas}"),
            ])
            .expect("kubectl scale");
    }

    fn restore(&self) {
        let _ = self.0.kubectl(&[
            "-n",
            SYSTEM_NS,
            "scale",
            &format!("deployment/{WEBHOOK_NAME}"),
            "--replicas=2",
        ]);
        let _ = self.0.kubectl(&[
            "-n",
            SYSTEM_NS,
            "rollout",
            "status",
            &format!("deployment/{WEBHOOK_NAME}"),
            "--timeout=120s",
        ]);
    }
}

impl Drop for RestoreWebhook<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.restore();
        }
    }
}

/// Scenario 7: the webhook is down (scaled to 0, no ready endpoint, no Pod left): Pods are still
/// admitted, unmutated (`failurePolicy: Ignore`), and the API server counts each in
/// `apiserver_admission_webhook_fail_open_count`. Restored afterwards (and on failure).
#[tokio::test]
async fn webhook_down_pods_are_admitted_unmutated_and_the_api_server_counts_them_fail_open() {
    let node =
        node!("webhook_down_pods_are_admitted_unmutated_and_the_api_server_counts_them_fail_open");
    let _webhook = WEBHOOK.write().await;
    let ns = injected_namespace(&node, "ops-down", &[]).await;
    let pods = ns.pods();
    let before = fail_open_count(&node).await;

    let guard = RestoreWebhook(&node);
    guard.scale(0);
    let slices: Api<EndpointSlice> = Api::namespaced(node.client.clone(), SYSTEM_NS);
    poll("no webhook endpoint and no webhook Pod", MINUTE, || async {
        let list = slices
            .list(
                &ListParams::default()
                    .labels(&format!("kubernetes.io/service-name={WEBHOOK_NAME}")),
            )
            .await?;
        let endpoints = list.items.iter().flat_map(|s| s.endpoints.iter()).count();
        Ok((endpoints == 0 && webhook_pod_names(&node).await.is_empty()).then_some(()))
    })
    .await
    .expect("the webhook is down");

    const N: usize = 3;
    for i in 0..N {
        let name = format!("outage-{i}");
        let params = if i == 0 {
            PostParams::default()
        } else {
            dry_run()
        };
        let started = Instant::now();
        let stored = pods
            .create(
                &params,
                &demo_pod(DemoPod::new(&name, &["/app/deputy-app"])),
            )
            .await
            .unwrap_or_else(|e| panic!("{name} is admitted with the webhook down: {e}"));
        assert!(!is_injected(&stored), "{name}: unmutated");
        assert!(init_names(&stored).is_empty(), "{name}: unmutated");
        assert!(
            !touched_by_deputy(container(&stored, "app")),
            "{name}: unmutated"
        );
        let admitted = started.elapsed();
        figures::record(
            "outage",
            &format!("{name} admitted unmutated in {admitted:?}"),
            json!({"pod": name, "dry_run": i > 0, "admitted_s": admitted.as_secs_f64()}),
        );
    }
    let stored = pods.get("outage-0").await.expect("stored");
    assert!(!is_injected(&stored));
    let after = fail_open_count(&node).await;
    assert!(
        after - before >= N as f64,
        "apiserver_admission_webhook_fail_open_count rose by {} (from {before} to {after}), expected at least {N}",
        after - before
    );
    figures::record(
        "outage",
        &format!("apiserver_admission_webhook_fail_open_count {before} -> {after}"),
        json!({"fail_open_before": before, "fail_open_after": after}),
    );

    guard.scale(2);
    guard.restore();
    require_deputy(&node, &ns.name)
        .await
        .expect("restored: a dry-run Pod comes back mutated");
    let injected = pods
        .create(
            &dry_run(),
            &demo_pod(DemoPod::new("after", &["/app/deputy-app"])),
        )
        .await
        .expect("create after the restore");
    assert!(is_injected(&injected), "mutated again after the restore");
}
