//! Scenario 6: a second mutating webhook, with `reinvocationPolicy: IfNeeded` like ours, adds a
//! container before or after k8s-deputy; either order gives exactly one injection.

use std::time::Duration;

use deputy_e2e::deputy::{injected_namespace, WEBHOOK_NAME};
use deputy_e2e::figures;
use deputy_e2e::injection::{
    annotation, container, deputy_mounts, init_names, touched_by_deputy, volume_names,
    STATUS_ANNOTATION,
};
use deputy_e2e::pods::{demo_pod, dry_run, DemoPod};
use deputy_e2e::test_webhook;
use deputy_e2e::{node, poll, unique, wait_running, BUSYBOX, MINUTE};
use kube::api::PostParams;
use serde_json::json;

use crate::WEBHOOK;

/// Scenario 6: a second mutating webhook adds a container `added-later`; both webhooks have
/// `reinvocationPolicy: IfNeeded`. The API server calls configurations in the order of their
/// names, so the test runs both orders (`a-...` before `deputy-webhook`, `z-...` after it).
/// Either way there is exactly one `deputy-install` and one set of volumes. When k8s-deputy
/// runs first, the container added after it is left alone (its reinvocation is skipped: the Pod
/// is already injected); when the other webhook runs first, k8s-deputy sees `added-later` as an
/// ordinary entry of `spec.containers` and injects it like any other.
#[tokio::test]
async fn second_webhook_adding_a_container_never_causes_a_double_injection_in_either_order() {
    let node =
        node!("second_webhook_adding_a_container_never_causes_a_double_injection_in_either_order");
    let _webhook = WEBHOOK.read().await;
    let server_ns = node.namespace("ops-adder", &[]).await;
    let add = format!("added-later={BUSYBOX}");
    let ca = test_webhook::serve(&node, &server_ns, "adder", &["--add-container", &add]).await;

    for (prefix, deputy_first) in [("a", false), ("z", true)] {
        // Each order gets its own namespace and selector: the API server drops a deleted
        // configuration from its cache a moment later, so the previous order's configuration
        // must not be able to match this order's Pods.
        let target_label = format!("adder-{prefix}-{}", unique());
        let ns = injected_namespace(
            &node,
            "ops-reinvoke",
            &[("e2e.k8s-deputy.io/adder", &target_label)],
        )
        .await;
        let pods = ns.pods();
        let config_name = format!("{prefix}-e2e-adder-{}", ns.name);
        assert_eq!(config_name.as_str() > WEBHOOK_NAME, deputy_first);
        let mut configuration = test_webhook::configuration(
            &config_name,
            "adder.e2e.k8s-deputy.io",
            (&server_ns, "adder"),
            &ca,
            ("e2e.k8s-deputy.io/adder", &target_label),
        );
        configuration["webhooks"][0]["reinvocationPolicy"] = json!("IfNeeded");
        let _cleanup = test_webhook::register(&node, configuration).await;

        let name = if deputy_first {
            "deputy-first"
        } else {
            "adder-first"
        };
        // The API server applies a new configuration once its informer has seen it, and fails
        // closed until the test webhook's Service answers: probe with a dry run (another name, so
        // the call count below stays exact) until the added container shows up.
        let probe = demo_pod(DemoPod::new(&format!("{name}-probe"), &["/app/deputy-app"]));
        poll(
            &format!("configuration {config_name} in effect"),
            MINUTE,
            || async {
                let pod = pods.create(&dry_run(), &probe).await?;
                let has_added = pod
                    .spec
                    .is_some_and(|s| s.containers.iter().any(|c| c.name == "added-later"));
                Ok(has_added.then_some(()))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let stored = pods
            .create(
                &PostParams::default(),
                &demo_pod(DemoPod::new(name, &["/app/deputy-app"])),
            )
            .await
            .unwrap_or_else(|e| panic!("create Pod {name} through both webhooks: {e:#}"));

        let containers: Vec<&str> = stored
            .spec
            .as_ref()
            .unwrap()
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(
            containers,
            ["app", "added-later"],
            "{name}: the container was added once"
        );
        assert_eq!(
            init_names(&stored),
            ["deputy-install"],
            "{name}: one installer"
        );
        let mut volumes = volume_names(&stored);
        volumes.retain(|v| v.starts_with("deputy-"));
        volumes.sort();
        assert_eq!(
            volumes,
            ["deputy-agent", "deputy-ipc"],
            "{name}: one set of volumes"
        );
        assert!(
            touched_by_deputy(container(&stored, "app")),
            "{name}: app is injected"
        );
        assert_eq!(
            deputy_mounts(container(&stored, "app")),
            ["deputy-agent", "deputy-ipc"],
            "{name}: app mounts each volume once"
        );
        let added = container(&stored, "added-later");
        let status = annotation(&stored, STATUS_ANNOTATION)
            .unwrap_or_default()
            .to_owned();
        if deputy_first {
            assert!(
                !touched_by_deputy(added),
                "{name}: added-later is left alone: {added:?}"
            );
            assert_eq!(status, "injected:app", "{name}");
        } else {
            assert!(
                touched_by_deputy(added),
                "{name}: added-later was there first: {added:?}"
            );
            assert_eq!(status, "injected:app,added-later", "{name}");
            assert_eq!(
                deputy_mounts(added),
                ["deputy-agent", "deputy-ipc"],
                "{name}: added-later mounts each volume once"
            );
        }
        // The adder is called twice when it runs first (again after k8s-deputy's change), once
        // when it runs last; its log lines reach the container log a moment after its replies.
        let expected_calls = if deputy_first { 1 } else { 2 };
        let call_prefix = format!("mutating Pod {}/{name} ", ns.name);
        let log = poll(
            &format!("{expected_calls} call(s) for {name} in the adder's log"),
            Duration::from_secs(15),
            || async {
                let log = node.kubectl_ok(&["-n", &server_ns.name, "logs", "adder"])?;
                let seen = log.lines().filter(|l| l.contains(&call_prefix)).count();
                Ok((seen >= expected_calls).then_some(log))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let calls: Vec<&str> = log.lines().filter(|l| l.contains(&call_prefix)).collect();
        assert_eq!(
            calls.iter().filter(|l| l.ends_with("added=true")).count(),
            1,
            "{name}: the test webhook added its container once: {calls:#?}"
        );
        figures::record(
            "reinvocation",
            &format!(
                "{name}: status {status:?}, the test webhook was called {} time(s): {calls:?}",
                calls.len()
            ),
            json!({
                "pod": name, "deputy_first": deputy_first, "status": status,
                "calls": calls.len(),
            }),
        );
        // The Pod is valid as stored: it runs.
        wait_running(&pods, name, MINUTE)
            .await
            .unwrap_or_else(|e| panic!("{name} runs: {e:#}"));
    }
}
