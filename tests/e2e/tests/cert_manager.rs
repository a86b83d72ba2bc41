//! `manifests/overlays/cert-manager` end to end, with cert-manager itself running on the node
//! (`harness.sh cert-manager up`; `harness.sh test` starts it): a renamed copy of the overlay is
//! applied, cert-manager issues the Certificate into the Secret the webhook mounts, its CA
//! injector fills the webhook configuration's caBundle, the webhook Pods start, and a Pod created
//! by server-side dry run comes back injected — through that caBundle, by those Pods.
//!
//! The copy sets `namespace:` and `namePrefix:` in its own kustomization (as the README tells
//! users), uses the images `make e2e-deploy` imported, and narrows both entries of its webhook
//! configuration to namespaces carrying a label of its own, so it never meets the Pods of
//! deputy-system's webhook or of other tests. Everything it creates is deleted, also on failure.
//! Records a `cert-manager` figure (`deputy_e2e::figures`), which `harness.sh test` summarises at
//! the end.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use deputy_e2e::deputy::{SYSTEM_NS, WEBHOOK_NAME, WEBHOOK_SELECTOR};
use deputy_e2e::figures;
use deputy_e2e::injection::{annotation, STATUS_ANNOTATION};
use deputy_e2e::manifests::ScratchCopy;
use deputy_e2e::pods::{dry_run, pod};
use deputy_e2e::test_webhook::DeleteOnDrop;
use deputy_e2e::tls::{Certificate, TLS_SECRET};
use deputy_e2e::{available_replicas, poll, skip_or_fail, unique, Node, BUSYBOX};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use serde_json::json;

/// The processes `harness.sh cert-manager up` starts; their PIDs are in `<state>/pids/`.
const DAEMONS: [&str; 2] = ["cert-manager-controller", "cert-manager-cainjector"];
/// The namespace label the copy's webhook entries require (its value is the test's own).
const SCOPE_LABEL: &str = "e2e.k8s-deputy.io/cert-manager";

/// What is missing for this test, if anything: cert-manager's processes, its CRDs, or the
/// k8s-deputy images (`make e2e-deploy` imports them and deploys deputy-system).
async fn missing_part(node: &Node) -> Option<String> {
    if let Some(why) = harness_daemons_missing(node) {
        // On kind (tests/e2e/kind.sh), cert-manager runs in the cluster from its release manifest.
        if !in_cluster_cert_manager_available(node).await {
            return Some(why);
        }
    }
    if !node
        .kubectl(&["get", "crd", "certificates.cert-manager.io"])
        .is_ok_and(|o| o.success)
    {
        return Some("cert-manager's CRDs are not applied".into());
    }
    if available_replicas(node, SYSTEM_NS, WEBHOOK_NAME).await == 0 {
        return Some(format!(
            "the k8s-deputy images are not imported ({SYSTEM_NS}/{WEBHOOK_NAME} has no \
             available replica; run `make e2e-deploy`)"
        ));
    }
    None
}

/// Why the processes `harness.sh cert-manager up` starts are not running, if they are not.
fn harness_daemons_missing(node: &Node) -> Option<String> {
    for daemon in DAEMONS {
        let pid_file = node.state_dir.join("pids").join(format!("{daemon}.pid"));
        let alive = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).ok())
            // The state follows the command name in parentheses; Z is exited, not yet reaped.
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim().to_owned())
            })
            .is_some_and(|rest| !rest.starts_with('Z'));
        if !alive {
            return Some(format!(
                "cert-manager is not running: {daemon} has no live PID in {}",
                pid_file.display()
            ));
        }
    }
    None
}

/// Whether cert-manager's controller and CA injector run in the cluster (namespace
/// `cert-manager`, as its release manifest installs them), each with an available replica.
async fn in_cluster_cert_manager_available(node: &Node) -> bool {
    for name in ["cert-manager", "cert-manager-cainjector"] {
        if available_replicas(node, "cert-manager", name).await == 0 {
            return false;
        }
    }
    true
}

/// Connects to the node and checks cert-manager runs there, or skips loudly naming what is
/// missing (a failure with `E2E_REQUIRED` set, as `harness.sh test` sets it).
async fn node_with_cert_manager(test: &str) -> Option<Node> {
    let node = Node::from_env(test).await?;
    let Some(why) = missing_part(&node).await else {
        return Some(node);
    };
    skip_or_fail(&format!(
        "e2e test {test}: {why}; run `tests/e2e/harness.sh cert-manager up` (`make e2e-test` \
         starts it)"
    ));
    None
}

/// Copies `manifests/` and edits the copy's cert-manager overlay: namespace and name prefix,
/// the locally imported images, and webhook entries that only match namespaces labelled
/// `SCOPE_LABEL=scope`.
fn overlay_copy(namespace: &str, prefix: &str, scope: &str) -> (ScratchCopy, PathBuf) {
    let copy = ScratchCopy::manifests();
    let overlay = copy.join("overlays/cert-manager");
    let kustomization = overlay.join("kustomization.yaml");
    let text = std::fs::read_to_string(&kustomization).expect("the overlay's kustomization");
    // Images and pull policy as manifests/overlays/local sets them; the first matchExpression of
    // each entry (the opt-in label) is replaced, the second (system namespaces by name) is kept
    // for the overlay's replacement to fill in.
    let scoped = |entry: u8| {
        format!(
            "      - op: replace\n        path: /webhooks/{entry}/namespaceSelector/matchExpressions/0\n        \
             value: {{key: {SCOPE_LABEL}, operator: In, values: [\"{scope}\"]}}\n"
        )
    };
    let edited = text
        .replacen(
            "resources:",
            &format!(
                "namespace: {namespace}\nnamePrefix: {prefix}\nimages:\n  \
                 - name: ghcr.io/k8s-deputy/deputy-webhook\n    newName: localhost/deputy-webhook\n    \
                 newTag: e2e\nresources:"
            ),
            1,
        )
        .replacen(
            "patches:\n",
            &format!(
                "patches:\n  - target: {{kind: Deployment, name: deputy-webhook}}\n    patch: |-\n      \
                 - op: add\n        path: /spec/template/spec/containers/0/imagePullPolicy\n        \
                 value: Never\n      - op: replace\n        \
                 path: /spec/template/spec/containers/0/env/0/value\n        \
                 value: localhost/deputy-agent:e2e\n      - op: add\n        \
                 path: /spec/template/spec/containers/0/env/-\n        \
                 value: {{name: DEPUTY_WEBHOOK_AGENT_IMAGE_PULL_POLICY, value: Never}}\n  \
                 - target: {{kind: MutatingWebhookConfiguration, name: deputy-webhook}}\n    \
                 patch: |-\n{}{}",
                scoped(0),
                scoped(1)
            ),
            1,
        );
    assert_ne!(
        edited, text,
        "the overlay's kustomization has the expected shape"
    );
    std::fs::write(&kustomization, edited).expect("write the copy's kustomization");
    (copy, overlay)
}

/// `kubectl apply --server-side -f -` of a multi-document YAML.
fn apply(node: &Node, yaml: &str) {
    let out = node
        .kubectl_with_input(&["apply", "--server-side", "-f", "-"], yaml)
        .expect("the node's kubectl runs");
    assert!(out.success, "kubectl apply failed: {}\n{yaml}", out.stderr);
}

#[tokio::test]
async fn cert_manager_overlay_issues_the_certificate_injects_the_ca_and_the_webhook_mutates_pods() {
    let Some(node) = node_with_cert_manager("cert_manager").await else {
        return;
    };
    let scope = unique();
    let namespace = format!("e2e-cm-{scope}");
    let prefix = format!("cm{scope}-");
    let service = format!("{prefix}deputy-webhook");
    let (_copy, overlay) = overlay_copy(&namespace, &prefix, &scope);
    let yaml = node
        .kubectl_ok(&["kustomize", overlay.to_str().expect("a UTF-8 path")])
        .expect("the copy renders");
    // Negative control for the injection: nothing but cert-manager's CA injector sets a caBundle.
    assert!(!yaml.contains("caBundle"), "{yaml}");
    assert!(
        yaml.contains(&format!(
            "cert-manager.io/inject-ca-from: {namespace}/{service}"
        )),
        "{yaml}"
    );

    // Dropped in reverse: the webhook configuration goes first, then the namespace (not waited
    // for: its webhook Pods take their grace period, and nothing calls them any more).
    let _namespace_guard = node.adopt_namespace(&namespace);
    let _configuration_guard = DeleteOnDrop(&node, "mutatingwebhookconfiguration", service.clone());
    let t0 = Instant::now();
    apply(&node, &yaml);

    let ready = poll(
        "the Certificate to be Ready",
        Duration::from_secs(60),
        || async {
            let status = node.kubectl_ok(&[
                "-n",
                &namespace,
                "get",
                "certificate",
                &service,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ])?;
            Ok((status == "True").then(Instant::now))
        },
    )
    .await
    .unwrap_or_else(|e| {
        let described = node.kubectl(&[
            "-n",
            &namespace,
            "describe",
            "certificate,certificaterequest",
        ]);
        panic!("{e:#}\n{described:?}")
    });

    let secrets: Api<Secret> = Api::namespaced(node.client.clone(), &namespace);
    // The Secret the Certificate writes and the Deployment mounts (the overlay does not rename it).
    let secret = secrets
        .get(TLS_SECRET)
        .await
        .expect("the Certificate's Secret");
    let data = secret.data.unwrap_or_default();
    let leaf = &data.get("tls.crt").expect("tls.crt in the Secret").0;
    let ca = &data.get("ca.crt").expect("ca.crt in the Secret").0;
    assert!(
        !leaf.is_empty() && !ca.is_empty(),
        "tls.crt and ca.crt are filled"
    );
    let names = Certificate::from_pem(leaf).dns_names();
    for expected in [
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
    ] {
        assert!(names.contains(&expected), "{expected} not in {names:?}");
    }

    let configurations: Api<MutatingWebhookConfiguration> = Api::all(node.client.clone());
    let injected = poll(
        "the caBundle to be injected",
        Duration::from_secs(60),
        || async {
            let configuration = configurations.get(&service).await?;
            let webhooks = configuration.webhooks.unwrap_or_default();
            let done = webhooks.len() == 2
                && webhooks
                    .iter()
                    .all(|w| w.client_config.ca_bundle.as_ref().map(|b| &b.0) == Some(ca));
            Ok(done.then(Instant::now))
        },
    )
    .await
    .expect("cert-manager's CA injector fills both entries with the Secret's ca.crt");

    let deployments: Api<Deployment> = Api::namespaced(node.client.clone(), &namespace);
    let pods_ready = poll(
        "the webhook Pods to be ready",
        Duration::from_secs(120),
        || async {
            let deployment = deployments.get(&service).await?;
            let generation = deployment.metadata.generation;
            let want = deployment.spec.and_then(|s| s.replicas).unwrap_or(1);
            let status = deployment.status.unwrap_or_default();
            let done = status.observed_generation >= generation
                && status.ready_replicas == Some(want)
                && status.updated_replicas == Some(want);
            Ok(done.then(Instant::now))
        },
    )
    .await
    .unwrap_or_else(|e| {
        let pods = node.kubectl(&["-n", &namespace, "get", "pods,events"]);
        panic!("{e:#}\n{pods:?}")
    });

    // A namespace only this copy's webhook answers for (TestNamespace deletes it on drop).
    let target = node.namespace("cm-pods", &[(SCOPE_LABEL, &scope)]).await;
    let probe_name = format!("cm-probe-{scope}");
    let probe = pod(json!({
        "metadata": {"name": probe_name},
        "spec": {"containers": [{
            "name": "app", "image": BUSYBOX, "imagePullPolicy": "Never",
            "command": ["sleep", "3600"]
        }]}
    }));
    // The Service's endpoints follow the Pods' readiness by a moment; the webhook fails open
    // meanwhile, so the Pod is asked for until it comes back mutated.
    let status = poll(
        "a dry-run Pod to come back injected",
        Duration::from_secs(60),
        || async {
            let stored = target.pods().create(&dry_run(), &probe).await?;
            Ok(annotation(&stored, STATUS_ANNOTATION).map(str::to_owned))
        },
    )
    .await
    .expect("the webhook served with cert-manager's certificate injects the Pod");
    let mutated = t0.elapsed();
    assert!(
        status.starts_with("injected:"),
        "status annotation {status:?}"
    );

    // It was this copy's webhook: its own Pods logged the admission of the probe (polled: the
    // line reaches the container log through containerd a moment after the reply).
    let admitted_here = |logs: &str| {
        logs.lines().any(|l| {
            l.contains(&format!("\"name\":\"{probe_name}\""))
                && l.contains(&format!("\"namespace\":\"{}\"", target.name))
        })
    };
    let webhook_logs = || {
        node.kubectl_ok(&[
            "-n",
            &namespace,
            "logs",
            "-l",
            WEBHOOK_SELECTOR,
            "--tail=-1",
        ])
    };
    let found = poll(
        "the probe's admission in the copy's webhook logs",
        Duration::from_secs(15),
        || async { Ok(admitted_here(&webhook_logs()?).then_some(())) },
    )
    .await;
    if let Err(e) = found {
        panic!(
            "{e:#}; the copy's webhook logs:\n{}",
            webhook_logs().unwrap_or_else(|e| format!("(unreadable: {e:#})"))
        );
    }

    let at = |t: Instant| t.duration_since(t0).as_secs_f64();
    let (ready, injected, pods_ready) = (at(ready), at(injected), at(pods_ready));
    let mutated = mutated.as_secs_f64();
    figures::record(
        "cert-manager",
        &format!(
            "Certificate Ready +{ready:.1} s, caBundle injected +{injected:.1} s, webhook Pods \
             ready +{pods_ready:.1} s, dry-run Pod {status} +{mutated:.1} s after the apply"
        ),
        json!({
            "certificate_ready_s": ready, "ca_bundle_injected_s": injected,
            "webhook_pods_ready_s": pods_ready, "pod_mutated_s": mutated, "status": status,
        }),
    );
}
