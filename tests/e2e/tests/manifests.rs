//! Every kustomization under `manifests/` renders, and the API server accepts what it renders
//! (server-side dry run, so nothing is changed): the base and the local overlay whole, the
//! cert-manager overlay without cert-manager's own kinds (their CRDs need not be there; their
//! rendered fields are checked instead, and tests/cert_manager.rs applies the whole overlay with
//! cert-manager running), and the replacements that keep references right when an overlay renames
//! the namespace and adds a name prefix.

use std::path::{Path, PathBuf};

use deputy_e2e::manifests::{manifests_dir, ScratchCopy};
use deputy_e2e::{node, Node};

fn manifests() -> PathBuf {
    manifests_dir()
}

fn render(node: &Node, dir: &Path) -> String {
    node.kubectl_ok(&["kustomize", dir.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("kubectl kustomize {}: {e:#}", dir.display()))
}

/// Server-side dry run of a multi-document YAML through the node's kubectl.
fn dry_run(node: &Node, yaml: &str) -> String {
    let out = node
        .kubectl_with_input(&["apply", "--dry-run=server", "-f", "-"], yaml)
        .unwrap();
    assert!(
        out.success,
        "the API server refused the manifests:\n{}\n{yaml}",
        out.stderr
    );
    out.stdout
}

/// Fails naming the first of `expected` that `yaml` lacks.
fn assert_contains_all(yaml: &str, expected: &[&str]) {
    for expected in expected {
        assert!(yaml.contains(expected), "missing {expected:?} in:\n{yaml}");
    }
}

/// Renders an overlay after setting `namespace: other-ns` and `namePrefix: acme-` in its own
/// kustomization (the overlay's directory is a scratch copy).
fn render_renamed(node: &Node, overlay: &Path) -> String {
    let kustomization = overlay.join("kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).unwrap();
    let renamed = text.replacen(
        "resources:",
        "namespace: other-ns\nnamePrefix: acme-\nresources:",
        1,
    );
    std::fs::write(&kustomization, renamed).unwrap();
    render(node, overlay)
}

fn without_cert_manager_kinds(yaml: &str) -> String {
    yaml.split("\n---\n")
        .filter(|doc| !doc.contains("apiVersion: cert-manager.io/"))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

#[tokio::test]
async fn every_overlay_renders_and_the_api_server_accepts_it() {
    let node = node!("manifests");
    // The namespace must exist for a dry run of namespaced objects; harness.sh test deployed it.
    node.kubectl_ok(&["get", "namespace", "deputy-system"])
        .expect("deputy-system exists (harness.sh test deploys first)");
    for dir in ["base", "overlays/self-signed", "overlays/local"] {
        let yaml = render(&node, &manifests().join(dir));
        let applied = dry_run(&node, &yaml);
        if dir != "base" {
            for object in [
                "secret/deputy-webhook-tls",
                "role.rbac.authorization.k8s.io/deputy-webhook-tls",
                "rolebinding.rbac.authorization.k8s.io/deputy-webhook-tls",
                "clusterrole.rbac.authorization.k8s.io/deputy-webhook-cabundle",
                "clusterrolebinding.rbac.authorization.k8s.io/deputy-webhook-cabundle",
            ] {
                assert!(
                    applied.contains(object),
                    "{dir}: {object} missing in:\n{applied}"
                );
            }
            assert!(
                !yaml.contains("--tls-cert"),
                "{dir}: no certificate files:\n{yaml}"
            );
        }
        for object in [
            "namespace/deputy-system",
            "serviceaccount/deputy-webhook",
            "service/deputy-webhook",
            "deployment.apps/deputy-webhook",
            "poddisruptionbudget.policy/deputy-webhook",
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/deputy-webhook",
        ] {
            assert!(
                applied.contains(object),
                "{dir}: {object} missing in:\n{applied}"
            );
        }
        eprintln!("manifests: {dir} accepted by the API server (server-side dry run)");
    }
    let yaml = render(&node, &manifests().join("overlays/cert-manager"));
    assert!(
        yaml.contains("cert-manager.io/inject-ca-from: deputy-system/deputy-webhook"),
        "{yaml}"
    );
    assert!(
        yaml.contains("- deputy-webhook.deputy-system.svc\n"),
        "{yaml}"
    );
    assert!(yaml.contains("secretName: deputy-webhook-tls"), "{yaml}");
    dry_run(&node, &without_cert_manager_kinds(&yaml));
    eprintln!("manifests: overlays/cert-manager renders, and its Kubernetes objects are accepted");
}

#[tokio::test]
async fn a_renamed_namespace_and_prefix_keep_every_reference_right() {
    let node = node!("manifests");
    // A copy of manifests/ whose cert-manager overlay sets a namespace and a name prefix itself,
    // as the README tells users to.
    let copy = ScratchCopy::manifests();
    let yaml = render_renamed(&node, &copy.join("overlays/cert-manager"));
    assert_contains_all(
        &yaml,
        &[
            "cert-manager.io/inject-ca-from: other-ns/acme-deputy-webhook",
            "- acme-deputy-webhook.other-ns.svc\n",
            "name: acme-deputy-selfsigned",
            "      name: acme-deputy-webhook\n      namespace: other-ns\n      path: /mutate",
        ],
    );
    // Negative control: the unrenamed names are gone from the references.
    assert!(!yaml.contains("inject-ca-from: deputy-system/"), "{yaml}");

    // The self-signed overlay: the names the webhook is told, and those RBAC grants, follow.
    let yaml = render_renamed(&node, &copy.join("overlays/self-signed"));
    assert_contains_all(
        &yaml,
        &[
            "- name: DEPUTY_WEBHOOK_TLS_SECRET\n          value: acme-deputy-webhook-tls\n",
            "- name: DEPUTY_WEBHOOK_CONFIGURATION\n          value: acme-deputy-webhook\n",
            "- name: DEPUTY_WEBHOOK_SERVICE\n          value: acme-deputy-webhook\n",
            "  resourceNames:\n  - acme-deputy-webhook-tls\n",
            "  resourceNames:\n  - acme-deputy-webhook\n",
            "- kind: ServiceAccount\n  name: acme-deputy-webhook\n  namespace: other-ns\n",
            "      name: acme-deputy-webhook\n      namespace: other-ns\n      path: /mutate",
        ],
    );
    assert!(!yaml.contains("deputy-system"), "{yaml}");
}
