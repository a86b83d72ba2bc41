//! The Helm chart `charts/k8s-deputy` with real Helm 4: it lints and renders with its defaults;
//! its schema refuses wrong values with a message naming the key; for the same settings it
//! renders the objects the kustomize overlays render (so the two never drift); and on the node
//! (tests/chart_release.rs) a release installs, serves, passes `helm test`, upgrades without an
//! unmutated admission, and uninstalls leaving nothing.

use std::collections::BTreeMap;

use deputy_e2e::chart::{chart_dir, helm, helm_binary, objects, without_helm_conventions};
use deputy_e2e::manifests::manifests_dir;
use deputy_e2e::Node;
use serde_json::Value;

fn chart() -> String {
    chart_dir().to_str().expect("a UTF-8 path").to_owned()
}

#[test]
fn the_chart_lints_and_renders_with_its_default_values() {
    let Some(bin) = helm_binary("the_chart_lints_and_renders_with_its_default_values") else {
        return;
    };
    let lint = helm(&bin, None, &["lint", "--strict", &chart()]);
    assert!(lint.success, "helm lint:\n{}{}", lint.stdout, lint.stderr);
    let out = helm(
        &bin,
        None,
        &["template", "deputy", &chart(), "-n", "deputy-system"],
    );
    assert!(out.success, "helm template: {}", out.stderr);
    let kinds: Vec<String> = objects(&out.stdout).keys().cloned().collect();
    for expected in [
        "Deployment/deputy-system/deputy-webhook",
        "Service/deputy-system/deputy-webhook",
        "MutatingWebhookConfiguration//deputy-webhook",
        "PodDisruptionBudget/deputy-system/deputy-webhook",
        "Secret/deputy-system/deputy-webhook-tls",
        "Role/deputy-system/deputy-webhook-tls",
        "ClusterRole//deputy-webhook-cabundle",
        "Pod/deputy-system/deputy-webhook-test",
    ] {
        assert!(
            kinds.iter().any(|k| k == expected),
            "no {expected} in {kinds:?}"
        );
    }
}

#[test]
fn wrong_values_fail_with_a_message_naming_the_key() {
    let Some(bin) = helm_binary("wrong_values_fail_with_a_message_naming_the_key") else {
        return;
    };
    // (--set, what the message must name)
    let cases = [
        ("replica=3", "additional properties 'replica' not allowed"),
        ("replicas=two", "/replicas"),
        ("replicas=0", "/replicas"),
        ("tls.mode=vault", "/tls/mode"),
        ("tls.mode=secret", "/tls/caBundle"),
        ("tls.caBundle=not base64!", "/tls/caBundle"),
        ("webhook.failurePolicy=Never", "/webhook/failurePolicy"),
        ("webhook.timeoutSeconds=31", "/webhook/timeoutSeconds"),
        ("injection.drain=soon", "/injection/drain"),
        ("injection.ipcVolumeSize=lots", "/injection/ipcVolumeSize"),
        (
            "injection.agentImage=x",
            "additional properties 'agentImage' not allowed",
        ),
        (
            "image.agent.pullPolicy=Sometimes",
            "/image/agent/pullPolicy",
        ),
        ("optIn.pods=yes", "/optIn/pods"),
        ("fullnameOverride=Deputy", "/fullnameOverride"),
    ];
    for (set, named) in cases {
        let out = helm(&bin, None, &["template", "deputy", &chart(), "--set", set]);
        assert!(!out.success, "--set {set} was accepted:\n{}", out.stdout);
        assert!(
            out.stderr.contains(named),
            "--set {set}: the message does not name {named:?}:\n{}",
            out.stderr
        );
        assert!(
            out.stdout.is_empty(),
            "--set {set}: rendered something:\n{}",
            out.stdout
        );
    }
    // Rules across keys, from the templates: named too.
    let out = helm(
        &bin,
        None,
        &[
            "template",
            "deputy",
            &chart(),
            "--set",
            "optIn.pods=false",
            "--set",
            "optIn.namespaces=false",
        ],
    );
    assert!(
        !out.success && out.stderr.contains("optIn"),
        "{}",
        out.stderr
    );
}

/// The objects an overlay renders, without its Namespace: Helm installs into the release's
/// namespace (`--create-namespace`) and does not own it.
fn overlay_objects(node: &Node, overlay: &str) -> BTreeMap<String, Value> {
    let dir = manifests_dir().join("overlays").join(overlay);
    let yaml = node
        .kubectl_ok(&["kustomize", dir.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("kubectl kustomize {overlay}: {e:#}"));
    let mut objects = objects(&yaml);
    objects.retain(|key, _| !key.starts_with("Namespace/"));
    objects
}

#[tokio::test]
async fn the_chart_renders_the_objects_the_kustomize_overlays_render() {
    let test = "the_chart_renders_the_objects_the_kustomize_overlays_render";
    let Some(bin) = helm_binary(test) else {
        return;
    };
    let Some(node) = Node::from_env(test).await else {
        return;
    };
    // (overlay, the chart's values for the same settings)
    let pairs: [(&str, &[&str]); 3] = [
        ("self-signed", &[]),
        ("cert-manager", &["tls.mode=cert-manager"]),
        (
            "local",
            &[
                "image.webhook.repository=localhost/deputy-webhook",
                "image.webhook.tag=e2e",
                "image.webhook.pullPolicy=Never",
                "image.agent.repository=localhost/deputy-agent",
                "image.agent.tag=e2e",
                "image.agent.pullPolicy=Never",
                "tls.rotationOverlap=5s",
            ],
        ),
    ];
    let chart_path = chart();
    for (overlay, values) in pairs {
        let mut args = vec![
            "template",
            "deputy",
            chart_path.as_str(),
            "-n",
            "deputy-system",
        ];
        for value in values {
            args.extend(["--set", value]);
        }
        let out = helm(&bin, None, &args);
        assert!(out.success, "helm template for {overlay}: {}", out.stderr);
        let chart = without_helm_conventions(objects(&out.stdout));
        let kustomize = overlay_objects(&node, overlay);
        let chart_keys: Vec<&String> = chart.keys().collect();
        let kustomize_keys: Vec<&String> = kustomize.keys().collect();
        assert_eq!(
            chart_keys, kustomize_keys,
            "{overlay}: not the same objects"
        );
        for (key, object) in &kustomize {
            assert_eq!(
                &chart[key], object,
                "{overlay}: {key} differs between the chart (left) and the overlay (right)"
            );
        }
    }
}

/// The release under test: its name, namespace and object names (not the kustomize install's,
/// which stays in place: this release's webhook configuration sorts first, so the API server
/// asks it first, and a Pod it injected is skipped by the other).
const RELEASE: &str = "deputy-helm";
const RELEASE_NS: &str = "deputy-helm-e2e";
const FULLNAME: &str = "deputy-helm-e2e";
/// The agent image this release injects (dry-run Pods only: never pulled). It tells this
/// release's injections from the kustomize install's (`localhost/deputy-agent:e2e`).
const RELEASE_AGENT: &str = "localhost/deputy-agent:helm-e2e";

/// Uninstalls the release and deletes its namespace when dropped (also when the test fails).
struct ReleaseGuard<'a> {
    bin: &'a std::path::Path,
    node: &'a Node,
}

impl Drop for ReleaseGuard<'_> {
    fn drop(&mut self) {
        let _ = helm(
            self.bin,
            Some(&self.node.kubeconfig),
            &[
                "uninstall",
                RELEASE,
                "-n",
                RELEASE_NS,
                "--ignore-not-found",
                "--wait",
            ],
        );
        let _ = self.node.kubectl(&[
            "delete",
            "namespace",
            RELEASE_NS,
            "--ignore-not-found",
            "--wait=false",
        ]);
    }
}

fn install_args<'a>(verb: &'a str, chart: &'a str, test_ns: &'a str) -> Vec<String> {
    let mut args: Vec<String> = [
        verb,
        RELEASE,
        chart,
        "-n",
        RELEASE_NS,
        "--wait",
        "--timeout",
        "3m",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if verb == "install" {
        args.push("--create-namespace".into());
    }
    for value in [
        format!("fullnameOverride={FULLNAME}"),
        "image.webhook.repository=localhost/deputy-webhook".into(),
        "image.webhook.tag=e2e".into(),
        "image.webhook.pullPolicy=Never".into(),
        "image.agent.repository=localhost/deputy-agent".into(),
        "image.agent.tag=helm-e2e".into(),
        // Only Pods that opt in by label: the suite's injected namespaces stay the kustomize
        // install's.
        "optIn.namespaces=false".into(),
        format!("test.namespace={test_ns}"),
    ] {
        args.push("--set".into());
        args.push(value);
    }
    args
}

/// What admitting one dry-run Pod opted in by label gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Admitted {
    /// Injected by this release (its agent image).
    ByRelease,
    /// Injected, by the kustomize install: this release failed open.
    ByOther,
    /// Not injected at all.
    Unmutated,
    /// Refused by the API server.
    Rejected,
}

async fn admit_one(
    pods: &kube::Api<k8s_openapi::api::core::v1::Pod>,
) -> (Admitted, Option<Vec<String>>) {
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"generateName": "helm-probe-", "labels": {"k8s-deputy.io/inject": "true"}},
        "spec": {"containers": [{"name": "app", "image": "localhost/deputy-demo:e2e"}]},
    }))
    .expect("a Pod");
    let params = kube::api::PostParams {
        dry_run: true,
        ..Default::default()
    };
    match pods.create(&params, &pod).await {
        Err(_) => (Admitted::Rejected, None),
        Ok(pod) => {
            let spec = pod.spec.unwrap_or_default();
            let prestop = spec.containers[0]
                .lifecycle
                .as_ref()
                .and_then(|l| l.pre_stop.as_ref()?.exec.as_ref()?.command.clone());
            let image = spec
                .init_containers
                .unwrap_or_default()
                .first()
                .and_then(|c| c.image.clone());
            let admitted = match image.as_deref() {
                Some(RELEASE_AGENT) => Admitted::ByRelease,
                Some(_) => Admitted::ByOther,
                None => Admitted::Unmutated,
            };
            (admitted, prestop)
        }
    }
}

/// This release's objects left in the cluster: namespaced ones in its namespace (but the
/// namespace's own defaults), and its cluster-scoped ones.
fn leftovers(node: &Node, test_ns: &str) -> Vec<String> {
    let namespaced = node
        .kubectl_ok(&[
            "-n",
            RELEASE_NS,
            "get",
            "deployments,replicasets,pods,services,secrets,configmaps,serviceaccounts,roles,rolebindings,poddisruptionbudgets",
            "-o",
            "name",
        ])
        .expect("list the release namespace");
    let in_test_ns = node
        .kubectl_ok(&["-n", test_ns, "get", "roles,rolebindings", "-o", "name"])
        .expect("list the test namespace");
    let cluster = node
        .kubectl_ok(&[
            "get",
            "mutatingwebhookconfigurations,clusterroles,clusterrolebindings",
            "-o",
            "name",
        ])
        .expect("list cluster-scoped objects");
    namespaced
        .lines()
        .filter(|l| *l != "serviceaccount/default" && *l != "configmap/kube-root-ca.crt")
        .chain(in_test_ns.lines())
        .chain(cluster.lines().filter(|l| l.contains(FULLNAME)))
        .map(str::to_owned)
        .collect()
}

fn timed_helm(bin: &std::path::Path, node: &Node, args: &[String]) -> f64 {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let t0 = std::time::Instant::now();
    let out = helm(bin, Some(&node.kubeconfig), &args);
    assert!(
        out.success,
        "helm {}:\n{}{}",
        args.join(" "),
        out.stdout,
        out.stderr
    );
    t0.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_installs_passes_helm_test_upgrades_unmutated_free_and_uninstalls_leaving_nothing(
) {
    let test = "a_release_installs_passes_helm_test_upgrades_unmutated_free_and_uninstalls_leaving_nothing";
    let Some(bin) = helm_binary(test) else {
        return;
    };
    let Some(node) = Node::from_env(test).await else {
        return;
    };
    let test_ns = node.namespace("helm", &[]).await;
    let _guard = ReleaseGuard {
        bin: &bin,
        node: &node,
    };
    let chart = chart();
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(node.client.clone(), &test_ns.name);
    let mut figures = Vec::new();
    for round in ["first", "again"] {
        // install → webhook ready (helm --wait: the Deployment's replicas available)
        let install_s = timed_helm(&bin, &node, &install_args("install", &chart, &test_ns.name));
        // Ready, but until kube-proxy has programmed the new Service the API server's calls
        // are refused and fail open: how long until this release injects is the figure.
        let t0 = std::time::Instant::now();
        deputy_e2e::poll(
            &format!("{round} install: an opted-in Pod injected by the release"),
            deputy_e2e::MINUTE,
            || async { Ok((admit_one(&pods).await.0 == Admitted::ByRelease).then_some(())) },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
        let injecting_s = t0.elapsed().as_secs_f64();
        let out = helm(
            &bin,
            Some(&node.kubeconfig),
            &["test", RELEASE, "-n", RELEASE_NS, "--logs"],
        );
        assert!(
            out.success && out.stdout.contains("was injected"),
            "{round} install: helm test:\n{}{}",
            out.stdout,
            out.stderr
        );
        figures.push(format!(
            "{round} install -> ready {install_s:.1} s, -> injecting {injecting_s:.1} s later"
        ));
        if round == "first" {
            // upgrade with a changed value (a new drain rolls the webhook's Pods) while Pods
            // are being created: every one must be injected by this release.
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let creating = {
                let (pods, stop) = (pods.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut counts = BTreeMap::<Admitted, u64>::new();
                    let mut last_prestop = None;
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        let (admitted, prestop) = admit_one(&pods).await;
                        *counts.entry(admitted).or_default() += 1;
                        last_prestop = prestop.or(last_prestop);
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    (counts, last_prestop)
                })
            };
            let mut args = install_args("upgrade", &chart, &test_ns.name);
            args.extend(["--set".into(), "injection.drain=7s".into()]);
            let upgrade_s = tokio::task::block_in_place(|| timed_helm(&bin, &node, &args));
            // Until the old replicas are gone and a little after.
            tokio::time::sleep(std::time::Duration::from_secs(8)).await;
            stop.store(true, std::sync::atomic::Ordering::SeqCst);
            let (counts, last_prestop) = creating.await.expect("the creating task");
            let by_release = counts.get(&Admitted::ByRelease).copied().unwrap_or(0);
            let total: u64 = counts.values().sum();
            assert!(
                by_release >= 20,
                "too few Pods created during the upgrade: {counts:?}"
            );
            assert_eq!(
                by_release, total,
                "Pods not injected by the release during its upgrade: {counts:?}"
            );
            let prestop = last_prestop.unwrap_or_default().join(" ");
            assert!(
                prestop.contains("7s"),
                "the upgraded drain is not injected: {prestop}"
            );
            figures.push(format!(
                "upgrade (Pods rolled) {upgrade_s:.1} s, {total} Pods created meanwhile: {by_release} injected by the release, 0 unmutated, 0 rejected"
            ));
        }
        let t0 = std::time::Instant::now();
        let out = helm(
            &bin,
            Some(&node.kubeconfig),
            &["uninstall", RELEASE, "-n", RELEASE_NS, "--wait"],
        );
        assert!(out.success, "{round} uninstall: {}", out.stderr);
        // The Deployment's Pods go after it (garbage collection, their preStop and grace).
        deputy_e2e::poll(
            &format!("{round} uninstall: nothing of the release left"),
            deputy_e2e::MINUTE,
            || async { Ok(leftovers(&node, &test_ns.name).is_empty().then_some(())) },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}: {:?}", leftovers(&node, &test_ns.name)));
        let uninstall_s = t0.elapsed().as_secs_f64();
        figures.push(format!(
            "{round} uninstall {uninstall_s:.1} s, nothing left"
        ));
    }
    deputy_e2e::figures::record(
        "chart",
        &format!("helm {}", figures.join("; ")),
        serde_json::json!({"steps": figures}),
    );
}
