//! Scenario 5: skips are explained to the client. A container that already has its own preStop
//! is left alone and the webhook's warning reaches `kubectl`; Pods that are not opted in, or
//! opted out by label, are untouched and never warned about.

use deputy_e2e::deputy::{injected_namespace, INJECT_LABEL};
use deputy_e2e::injection::{
    annotation, container, init_names, is_injected, prestop, touched_by_deputy, volume_names,
    STATUS_ANNOTATION,
};
use deputy_e2e::pods::{demo_pod, DemoPod};
use deputy_e2e::{node, unique, Node};
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::WEBHOOK;

/// `kubectl apply` of one manifest (written to a file, as a user would), returning kubectl's
/// output: admission warnings are on its stderr.
fn kubectl_apply(
    node: &Node,
    namespace: &str,
    manifest: &serde_json::Value,
    extra: &[&str],
) -> deputy_e2e::KubectlOutput {
    let path = std::env::temp_dir().join(format!("deputy-e2e-{}.json", unique()));
    std::fs::write(&path, manifest.to_string()).expect("write the manifest");
    let mut args = vec!["-n", namespace, "apply", "-f", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = node.kubectl(&args).expect("run kubectl");
    let _ = std::fs::remove_file(&path);
    out
}

/// Scenario 5: skips are explained. A container that already has a preStop hook is left alone
/// and the webhook's warning reaches `kubectl`; the Pod is stored unmutated. Pods that are not
/// opted in, or opted out by label, are untouched and never warned about.
#[tokio::test]
async fn existing_prestop_is_left_untouched_and_kubectl_prints_the_warning() {
    let node = node!("existing_prestop_is_left_untouched_and_kubectl_prints_the_warning");
    let _webhook = WEBHOOK.read().await;
    let ns = injected_namespace(&node, "ops-skip", &[]).await;
    let plain_ns = node.namespace("ops-skip-plain", &[]).await;

    let with_hook = |name: &str, labels: serde_json::Value| {
        let mut manifest =
            serde_json::to_value(demo_pod(DemoPod::new(name, &["/app/deputy-app"]))).unwrap();
        manifest["apiVersion"] = json!("v1");
        manifest["kind"] = json!("Pod");
        manifest["metadata"]["labels"] = labels;
        manifest["spec"]["containers"][0]["lifecycle"] =
            json!({"preStop": {"exec": {"command": ["sleep", "1"]}}});
        manifest
    };
    const WARNING: &str =
        "Warning: k8s-deputy: container \"app\" already has a preStop hook; left unchanged";

    // Namespace-level opt-in, a real create: warned, stored unmutated.
    let out = kubectl_apply(&node, &ns.name, &with_hook("own-hook", json!({})), &[]);
    assert!(out.success, "kubectl apply: {}", out.stderr);
    assert!(
        out.stderr.contains(WARNING),
        "kubectl prints the webhook's warning; stderr: {}",
        out.stderr
    );
    eprintln!("skip: kubectl apply printed: {}", out.stderr.trim());
    let stored = ns.pods().get("own-hook").await.expect("the Pod is stored");
    assert_eq!(
        annotation(&stored, STATUS_ANNOTATION),
        None,
        "no status annotation"
    );
    assert!(
        init_names(&stored).is_empty(),
        "no init container: {:?}",
        init_names(&stored)
    );
    assert!(
        !volume_names(&stored)
            .iter()
            .any(|v| v.starts_with("deputy-")),
        "no volume of ours: {:?}",
        volume_names(&stored)
    );
    let app = container(&stored, "app");
    assert!(!touched_by_deputy(app), "container untouched: {app:?}");
    assert_eq!(prestop(app), ["sleep", "1"], "its own hook is kept");

    // Pod-level opt-in in a namespace that does not opt in: the same warning (server-side dry run).
    let out = kubectl_apply(
        &node,
        &plain_ns.name,
        &with_hook("own-hook-pod-opt-in", json!({INJECT_LABEL: "true"})),
        &["--dry-run=server", "-o", "json"],
    );
    assert!(out.success, "kubectl apply: {}", out.stderr);
    assert!(out.stderr.contains(WARNING), "stderr: {}", out.stderr);
    let returned: Pod = serde_json::from_str(&out.stdout).expect("kubectl -o json");
    assert!(!is_injected(&returned) && init_names(&returned).is_empty());

    // Negative control: the same Pod without its hook is injected, and not warned about.
    let mut no_hook = with_hook("no-hook", json!({}));
    no_hook["spec"]["containers"][0]
        .as_object_mut()
        .unwrap()
        .remove("lifecycle");
    let out = kubectl_apply(
        &node,
        &ns.name,
        &no_hook,
        &["--dry-run=server", "-o", "json"],
    );
    assert!(out.success, "kubectl apply: {}", out.stderr);
    assert!(
        !out.stderr.contains("k8s-deputy:"),
        "stderr: {}",
        out.stderr
    );
    let returned: Pod = serde_json::from_str(&out.stdout).expect("kubectl -o json");
    assert!(
        is_injected(&returned),
        "{:?}",
        returned.metadata.annotations
    );

    // Not opted in, and opted out by label: untouched, and nothing said (the API server never
    // calls the webhook for them).
    for (namespace, name, labels) in [
        (&plain_ns.name, "not-opted-in", json!({})),
        (&ns.name, "opted-out", json!({INJECT_LABEL: "false"})),
    ] {
        let mut manifest = no_hook.clone();
        manifest["metadata"]["name"] = json!(name);
        manifest["metadata"]["labels"] = labels;
        let out = kubectl_apply(
            &node,
            namespace,
            &manifest,
            &["--dry-run=server", "-o", "json"],
        );
        assert!(out.success, "kubectl apply {name}: {}", out.stderr);
        assert!(
            !out.stderr.contains("k8s-deputy:"),
            "{name}: stderr: {}",
            out.stderr
        );
        let returned: Pod = serde_json::from_str(&out.stdout).expect("kubectl -o json");
        assert!(
            !is_injected(&returned) && init_names(&returned).is_empty(),
            "{name} is untouched: {returned:?}"
        );
        assert!(!touched_by_deputy(container(&returned, "app")), "{name}");
    }
}
