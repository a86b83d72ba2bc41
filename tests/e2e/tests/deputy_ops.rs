//! k8s-deputy in operation on a real node (issue 5, scenarios 5–9): skips explained to the
//! client, a second mutating webhook with reinvocation, the webhook down (fail open), its serving
//! certificate rotated under load, a Deployment's rolling update; and a latency benchmark.
//!
//! Needs the stack `scripts/e2e-deploy.sh` deploys (`make e2e-test` runs it first). Each test
//! works in namespaces of its own. The tests that take the webhook down, rotate its certificate
//! or measure it hold [`WEBHOOK`] for writing; the others hold it for reading, so none of them
//! sees the outage. Figures are printed as `rotation:`, `rollout:` and `bench:` lines, which
//! `harness.sh test` repeats at the end.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use deputy_e2e::deputy::{
    fail_open_count, injected_namespace, require_deputy, webhook_pod_names, webhook_pods,
    webhook_pods_ready, ENTRIES, INJECT_LABEL, METRICS_PORT, SYSTEM_NS, WEBHOOK_NAME,
};
use deputy_e2e::figures;
use deputy_e2e::injection::{
    annotation, container, deputy_mounts, init_names, is_injected, prestop, touched_by_deputy,
    volume_names, STATUS_ANNOTATION,
};
use deputy_e2e::manifests::manifests_dir;
use deputy_e2e::metrics::{self, Histogram};
use deputy_e2e::pods::{demo_pod, dry_run, DemoPod};
use deputy_e2e::termination::{
    line_index, show, terminated_state, termination_events, LogFollower, RELAY_ASKS, RELAY_CLEAN,
};
use deputy_e2e::test_webhook;
use deputy_e2e::tls::{
    self, annotate_tls_secret, configured_cas, tls_secret, tls_state, Certificate, TLS_SECRET,
};
use deputy_e2e::{node, poll, unique, wait_running, Node, BUSYBOX, MINUTE, NODE_NETNS};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use tokio::sync::RwLock;

/// The suite's tool binary, for its `relay` (the TLS probe's connection in the node's network
/// namespace).
const TOOL_BINARY: &str = env!("CARGO_BIN_EXE_deputy-e2e-tool");

/// Held for reading by tests that need the webhook serving as deployed, for writing by those
/// that take it down, rotate its certificate or measure it.
static WEBHOOK: RwLock<()> = RwLock::const_new(());

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
            json!({"pod": name, "deputy_first": deputy_first, "status": status, "calls": calls.len()}),
        );
        // The Pod is valid as stored: it runs.
        wait_running(&pods, name, MINUTE)
            .await
            .unwrap_or_else(|e| panic!("{name} runs: {e:#}"));
    }
}

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

/// What one Pod creation of the rotation load showed.
#[derive(Debug)]
struct Created {
    at: Duration,
    mutated: Result<bool, String>,
}

/// When each step of the rotation was first seen, from the annotation on.
#[derive(Debug, Default)]
struct Seen {
    new_ca_in_secret: Option<Duration>,
    new_ca_configured: Option<Duration>,
    new_leaf_in_secret: Option<Duration>,
    new_leaf_served: BTreeMap<String, Duration>,
    old_ca_dropped: Option<Duration>,
}

/// The TLS probe of the next test, without a node: through `deputy-e2e-tool relay`, it gets the
/// certificate a local rustls server presents, verified for the server's name against its CA;
/// the negative controls, a foreign CA and another name, get none.
#[test]
fn tls_probe_through_the_relay_verifies_the_served_certificate() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let name = format!("{WEBHOOK_NAME}.{SYSTEM_NS}.svc");
    let issued = tls::issue("probe", &name);
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(
            Certificate::from_pem(issued.cert.as_bytes()).0,
        )],
        PrivateKeyDer::from_pem_slice(issued.key.as_bytes()).unwrap(),
    )
    .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Not joined: a probe that never connects would leave it waiting.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            let mut server = rustls::ServerConnection::new(config.clone().into()).unwrap();
            while server.is_handshaking() && server.complete_io(&mut conn).is_ok() {}
        }
    });
    let relay = || {
        let mut relay = std::process::Command::new(TOOL_BINARY);
        relay.args(["relay", &addr]);
        relay
    };

    let served = tls::served_certificate(relay(), &name, &issued.ca).expect("a verified handshake");
    assert_eq!(
        served.serial(),
        Certificate::from_pem(issued.cert.as_bytes()).serial()
    );
    let foreign = tls::issue("foreign", &name).ca;
    let refused = tls::served_certificate(relay(), &name, &foreign);
    assert!(refused.is_err(), "a foreign CA: {refused:?}");
    let refused = tls::served_certificate(relay(), "other.deputy-system.svc", &issued.ca);
    assert!(refused.is_err(), "another name: {refused:?}");
}

/// Scenario 8: a CA rotation (`k8s-deputy.io/rotate` on the webhook's own Secret, the same steps
/// as a scheduled renewal) while Pods are being created: the new CA joins the bundle, the
/// caBundle follows, a new serving certificate signed by it is served by each webhook Pod
/// without a restart, the old CA leaves; every Pod created meanwhile comes back mutated, the API
/// server's fail-open count does not move, and the two replicas wrote the Secret three times in
/// all (one writer per step).
#[tokio::test]
async fn certificate_rotated_under_load_every_pod_is_mutated_and_nothing_fails_open() {
    let node = node!("certificate_rotated_under_load_every_pod_is_mutated_and_nothing_fails_open");
    let _webhook = WEBHOOK.write().await;
    let ns = injected_namespace(&node, "ops-rotate", &[]).await;
    let secrets: Api<Secret> = Api::namespaced(node.client.clone(), SYSTEM_NS);
    let old = tls_secret(&secrets).await;
    assert_eq!(
        old.cas.len(),
        1,
        "one CA before the rotation (a rotation left unfinished?)"
    );
    assert_eq!(
        configured_cas(&node).await,
        vec![old.cas.clone(); 2],
        "the caBundles hold the Secret's CA"
    );

    let webhook_pods_before = webhook_pod_names(&node).await;
    assert_eq!(
        webhook_pods_before.len(),
        2,
        "two webhook replicas: {webhook_pods_before:?}"
    );
    let mut before = BTreeMap::new();
    let mut writes_before = 0.0;
    for p in &webhook_pods_before {
        let state = tls_state(&node, p).await.expect("the webhook's metrics");
        writes_before += state.writes;
        before.insert(p.clone(), state);
    }
    let restarts = |pods: &[Pod]| -> BTreeMap<String, i32> {
        pods.iter()
            .map(|p| {
                let n = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
                (p.metadata.name.clone().unwrap_or_default(), n)
            })
            .collect()
    };
    let system_pods: Api<Pod> = Api::namespaced(node.client.clone(), SYSTEM_NS);
    let restarts_before = restarts(&webhook_pods(&node).await);
    let fail_open_before = fail_open_count(&node).await;

    // The load: server-side dry-run Pods, one every 250 ms, until told to stop and at least 30
    // were created (a slow machine makes fewer per second).
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let load_pods = ns.pods();
    let start = Instant::now();
    let load = tokio::spawn(async move {
        let mut created = Vec::new();
        let mut i = 0;
        while !*stop_rx.borrow() || created.len() < 30 {
            let spec = demo_pod(DemoPod::new(&format!("load-{i}"), &["/app/deputy-app"]));
            let mutated = match load_pods.create(&dry_run(), &spec).await {
                Ok(p) => Ok(is_injected(&p)),
                Err(e) => Err(e.to_string()),
            };
            created.push(Created {
                at: start.elapsed(),
                mutated,
            });
            i += 1;
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        created
    });

    tokio::time::sleep(Duration::from_secs(2)).await;
    let token = format!("e2e-{}", unique());
    let requested_at = start.elapsed();
    annotate_tls_secret(&secrets, "k8s-deputy.io/rotate", &token).await;

    let mut seen = Seen::default();
    let mut new_ca = String::new();
    let mut new_leaf = String::new();
    let mut new_not_after = 0.0;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut last_err = None;
    loop {
        let at = start.elapsed() - requested_at;
        let now = tls_secret(&secrets).await;
        if seen.new_ca_in_secret.is_none() && now.cas.len() == 2 && now.cas[1] == old.cas[0] {
            new_ca.clone_from(&now.cas[0]);
            seen.new_ca_in_secret = Some(at);
        }
        if !new_ca.is_empty() {
            let configured = configured_cas(&node).await;
            if seen.new_ca_configured.is_none() && configured.iter().all(|b| b.contains(&new_ca)) {
                seen.new_ca_configured = Some(at);
            }
            if seen.old_ca_dropped.is_none()
                && now.cas == [new_ca.clone()]
                && configured.iter().all(|b| *b == [new_ca.clone()])
            {
                seen.old_ca_dropped = Some(at);
            }
        }
        if seen.new_leaf_in_secret.is_none() && now.leaf != old.leaf && !new_ca.is_empty() {
            new_leaf.clone_from(&now.leaf);
            new_not_after = Certificate::from_pem(new_leaf.as_bytes()).not_after();
            seen.new_leaf_in_secret = Some(at);
        }
        if seen.new_leaf_in_secret.is_some() {
            for p in &webhook_pods_before {
                if seen.new_leaf_served.contains_key(p) {
                    continue;
                }
                match tls_state(&node, p).await {
                    Ok(state) if state.not_after == new_not_after => {
                        seen.new_leaf_served.insert(p.clone(), at);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if system_pods.get_opt(p).await.ok().flatten().is_none() {
                            panic!(
                                "webhook Pod {p} was replaced during the test: something else rolled \
                                 {SYSTEM_NS}/{WEBHOOK_NAME} (another deploy on this node?); rerun"
                            );
                        }
                        last_err = Some(e);
                    }
                }
            }
        }
        let done = seen.old_ca_dropped.is_some()
            && seen.new_leaf_served.len() == webhook_pods_before.len();
        if done || Instant::now() > deadline {
            assert_eq!(
                now.rotated.as_deref(),
                Some(token.as_str()),
                "the request is marked handled"
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A few more Pods once the old CA is gone, and at least 30 in all.
    let finished = start.elapsed();
    let end = (finished + Duration::from_secs(3)).max(Duration::from_secs(12));
    tokio::time::sleep(end.saturating_sub(start.elapsed())).await;
    stop_tx.send(true).unwrap();
    let created = load.await.expect("the load task");
    let (Some(ca_added), Some(configured), Some(leaf_written), Some(dropped)) = (
        seen.new_ca_in_secret,
        seen.new_ca_configured,
        seen.new_leaf_in_secret,
        seen.old_ca_dropped,
    ) else {
        panic!("the rotation finishes within 180 s; seen so far {seen:?}, last error {last_err:?}");
    };
    assert_eq!(
        seen.new_leaf_served.len(),
        webhook_pods_before.len(),
        "every webhook Pod serves the new certificate; {seen:?}, last error {last_err:?}"
    );
    // The order that keeps every handshake trusted, and the overlap (5 s in overlays/local)
    // between the new CA and the certificate it signs.
    assert!(
        ca_added <= configured && configured <= leaf_written && leaf_written <= dropped,
        "{seen:?}"
    );
    // The test sees each step up to one pass of its loop late, hence 3 s rather than 5.
    assert!(
        leaf_written.saturating_sub(ca_added) >= Duration::from_secs(3),
        "the new certificate waits the overlap after the new CA: {seen:?}"
    );

    let failures: Vec<&Created> = created.iter().filter(|c| c.mutated != Ok(true)).collect();
    assert!(created.len() >= 30, "{} Pods created", created.len());
    assert!(
        failures.is_empty(),
        "every Pod comes back mutated; {} of {} did not: {failures:?}",
        failures.len(),
        created.len()
    );
    let fail_open_after = fail_open_count(&node).await;
    assert_eq!(
        fail_open_after, fail_open_before,
        "apiserver_admission_webhook_fail_open_count did not move"
    );
    let mut writes_after = 0.0;
    for p in &webhook_pods_before {
        let state = tls_state(&node, p).await.expect("metrics");
        let old_state = before[p];
        assert!(
            state.loaded > old_state.loaded,
            "{p}: deputy_tls_reloads_total{{result=loaded}} {} -> {}",
            old_state.loaded,
            state.loaded
        );
        assert_eq!(state.refused, old_state.refused, "{p}: no pair refused");
        writes_after += state.writes;
    }
    assert_eq!(
        writes_after - writes_before,
        3.0,
        "one write per step (new CA, new certificate, old CA dropped) across both replicas"
    );
    // A new TLS handshake with each webhook Pod gets the new certificate, verified against the
    // new CA alone for the Service's name. Only on the local node, whose network namespace is
    // here (on kind, the metrics above are the proof).
    let mut handshakes = None;
    if Path::new(NODE_NETNS).exists() {
        let expected_serial = Certificate::from_pem(new_leaf.as_bytes()).serial();
        let service = format!("{WEBHOOK_NAME}.{SYSTEM_NS}.svc");
        for p in webhook_pods(&node).await {
            let ip = p
                .status
                .and_then(|s| s.pod_ip)
                .expect("a running Pod has an IP");
            let relay = tls::relay_in_node(Path::new(TOOL_BINARY), &format!("{ip}:8443"));
            let served = tls::served_certificate(relay, &service, &new_ca);
            assert_eq!(
                served.as_ref().ok().map(Certificate::serial),
                Some(expected_serial.clone()),
                "{:?} serves the new certificate: {served:?}",
                p.metadata.name
            );
            *handshakes.get_or_insert(0) += 1;
        }
    }
    let restarts_after = restarts(&webhook_pods(&node).await);
    assert_eq!(
        restarts_after, restarts_before,
        "the same webhook Pods, not restarted"
    );
    let during = created
        .iter()
        .filter(|c| c.at >= requested_at && c.at <= finished)
        .count();
    let secs = |d: Duration| format!("{:.1} s", d.as_secs_f64());
    let handshakes_text = match handshakes {
        Some(n) => format!("{n} new handshakes verified against the new CA alone"),
        None => format!("no handshake checked ({NODE_NETNS} is not here: not the local node)"),
    };
    let served: BTreeMap<&String, f64> = seen
        .new_leaf_served
        .iter()
        .map(|(p, t)| (p, t.as_secs_f64()))
        .collect();
    figures::record(
        "rotation",
        &format!(
            "{} dry-run Pods created ({during} during the CA rotation), all mutated; \
             new CA in the Secret after {}, in the caBundle after {}, new certificate after {}, served by {}; \
             old CA dropped after {}; {handshakes_text}; \
             fail_open_count {fail_open_before} -> {fail_open_after}; Secret writes {}",
            created.len(),
            secs(ca_added),
            secs(configured),
            secs(leaf_written),
            seen.new_leaf_served.iter().map(|(p, t)| format!("{p} {}", secs(*t))).collect::<Vec<_>>().join(", "),
            secs(dropped),
            writes_after - writes_before,
        ),
        json!({
            "pods": created.len(), "pods_during_rotation": during,
            "new_ca_in_secret_s": ca_added.as_secs_f64(), "new_ca_configured_s": configured.as_secs_f64(),
            "new_leaf_in_secret_s": leaf_written.as_secs_f64(), "new_leaf_served_s": served,
            "old_ca_dropped_s": dropped.as_secs_f64(), "handshakes_verified": handshakes,
            "fail_open_before": fail_open_before, "fail_open_after": fail_open_after,
            "secret_writes": writes_after - writes_before,
        }),
    );
}

/// The webhook's own Secret (`--tls-secret`) is kept when the manifests are applied again, and
/// when it is emptied the two replicas refill it exactly once between them (the loser of the race
/// gets a conflict and follows), the caBundle follows, and Pods are mutated again.
#[tokio::test]
async fn tls_secret_survives_a_reapply_and_is_refilled_once_when_emptied() {
    let node = node!("tls_secret_survives_a_reapply_and_is_refilled_once_when_emptied");
    let _webhook = WEBHOOK.write().await;
    let ns = injected_namespace(&node, "ops-refill", &[]).await;
    let secrets: Api<Secret> = Api::namespaced(node.client.clone(), SYSTEM_NS);
    let before = tls_secret(&secrets).await;
    let configured_before = configured_cas(&node).await;

    let overlay = manifests_dir().join("overlays/local");
    node.kubectl_ok(&["apply", "-k", overlay.to_str().unwrap()])
        .expect("apply the manifests again");
    let after = tls_secret(&secrets).await;
    assert_eq!(after.cas, before.cas, "a re-apply keeps the CA");
    assert_eq!(
        after.leaf, before.leaf,
        "a re-apply keeps the serving certificate"
    );
    assert_eq!(
        configured_cas(&node).await,
        configured_before,
        "and the caBundle"
    );

    let pods = webhook_pod_names(&node).await;
    let initial_writes = |samples: &[metrics::Sample]| {
        metrics::sum(
            samples,
            "deputy_tls_secret_writes_total",
            &[("reason", "initial")],
        )
    };
    let mut initial_before = 0.0;
    for p in &pods {
        initial_before += initial_writes(
            &metrics::pod(&node, SYSTEM_NS, p, METRICS_PORT)
                .await
                .unwrap(),
        );
    }
    let emptied_at = Instant::now();
    secrets
        .patch(
            TLS_SECRET,
            &PatchParams::default(),
            &Patch::Merge(json!({"data": null})),
        )
        .await
        .expect("empty the Secret");
    let refilled = poll(
        "the Secret refilled and the caBundle following it",
        MINUTE,
        || async {
            let now = tls_secret(&secrets).await;
            let configured = configured_cas(&node).await;
            Ok((now.cas.len() == 1
                && !now.leaf.is_empty()
                && configured.iter().all(|b| *b == now.cas))
            .then_some(now))
        },
    )
    .await
    .expect("refilled");
    let refill_time = emptied_at.elapsed();
    assert_ne!(refilled.cas, before.cas, "a new CA");
    let probe = ns.pods();
    poll("a dry-run Pod mutated again", MINUTE, || async {
        let p = probe
            .create(
                &dry_run(),
                &demo_pod(DemoPod::new("refill", &["/app/deputy-app"])),
            )
            .await?;
        Ok(is_injected(&p).then_some(()))
    })
    .await
    .expect("mutated with the new certificate");
    let mutated_again = emptied_at.elapsed();
    // One mutated dry run proves one replica; the next test must find both serving the new pair
    // (with failurePolicy Ignore, a stale one would pass Pods through unmutated).
    let refilled_not_after = Certificate::from_pem(refilled.leaf.as_bytes()).not_after();
    poll(
        "both replicas serving the refilled certificate",
        MINUTE,
        || async {
            for p in &pods {
                if tls_state(&node, p).await?.not_after != refilled_not_after {
                    return Ok(None);
                }
            }
            Ok(Some(()))
        },
    )
    .await
    .expect("every replica loads the refilled Secret");
    let mut initial_after = 0.0;
    for p in &pods {
        initial_after += initial_writes(
            &metrics::pod(&node, SYSTEM_NS, p, METRICS_PORT)
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        initial_after - initial_before,
        1.0,
        "one replica refilled it, once"
    );
    let (refilled_s, mutated_s) = (refill_time.as_secs_f64(), mutated_again.as_secs_f64());
    figures::record(
        "refill",
        &format!(
            "a re-apply kept the Secret and the caBundle; emptied, it was refilled by one write \
             and the caBundle followed within {refilled_s:.1} s; Pods mutated again after {mutated_s:.1} s"
        ),
        json!({"refilled_s": refilled_s, "mutated_again_s": mutated_s, "initial_writes": 1}),
    );
}

/// Makes the webhook's controller look at its Secret now (a watch event) instead of at its next
/// periodic look.
async fn nudge(secrets: &Api<Secret>) {
    annotate_tls_secret(secrets, "e2e.k8s-deputy.io/nudge", &unique()).await;
}

/// Re-applies the manifests when dropped: the RBAC this test narrows comes back, and with it the
/// controller's own repair of the caBundle, even if the test fails half-way.
struct ReapplyManifests<'a>(&'a Node);

impl Drop for ReapplyManifests<'_> {
    fn drop(&mut self) {
        let overlay = manifests_dir().join("overlays/local");
        let _ = self.0.kubectl(&["apply", "-k", overlay.to_str().unwrap()]);
    }
}

/// Waits until the API server's authorizer lets (or no longer lets) the webhook's service account
/// patch its MutatingWebhookConfiguration.
async fn wait_for_patch_permission(node: &Node, allowed: bool) {
    let service_account = format!("system:serviceaccount:{SYSTEM_NS}:{WEBHOOK_NAME}");
    let resource =
        format!("mutatingwebhookconfigurations.admissionregistration.k8s.io/{WEBHOOK_NAME}");
    poll(
        &format!("the authorizer to say {allowed} to the webhook's caBundle patch"),
        MINUTE,
        || async {
            let answer = node.kubectl(&[
                "auth",
                "can-i",
                "patch",
                &resource,
                "--as",
                &service_account,
            ])?;
            Ok((answer.stdout.trim() == if allowed { "yes" } else { "no" }).then_some(()))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
}

/// The safety net of `--tls-secret`: while the configuration's caBundle does not trust the
/// certificate a replica serves (here: a foreign CA patched in, and the controller's `patch`
/// permission taken away so it cannot repair it), the replicas are not ready; once it may patch
/// again, it restores the caBundle and they are ready, and Pods are mutated again.
#[tokio::test]
async fn replicas_are_unready_while_the_ca_bundle_does_not_trust_them() {
    let node = node!("replicas_are_unready_while_the_ca_bundle_does_not_trust_them");
    let _webhook = WEBHOOK.write().await;
    let ns = injected_namespace(&node, "ops-untrusted", &[]).await;
    let secrets: Api<Secret> = Api::namespaced(node.client.clone(), SYSTEM_NS);
    let restore = ReapplyManifests(&node);
    node.kubectl_ok(&[
        "patch",
        "clusterrole",
        "deputy-webhook-cabundle",
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/rules/0/verbs", "value": ["get"]}]"#,
    ])
    .expect("take the patch permission away");
    // The authorizer follows RBAC objects through a cache: wait until it denies the patch, or the
    // controller's first look could still repair the caBundle.
    wait_for_patch_permission(&node, false).await;
    let foreign = tls::issue("foreign", "foreign.invalid").ca;
    let encoded = base64::engine::general_purpose::STANDARD.encode(foreign.as_bytes());
    let ops: Vec<serde_json::Value> = (0..ENTRIES.len())
        .map(|i| json!({"op": "replace", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}))
        .collect();
    node.kubectl_ok(&[
        "patch",
        "mutatingwebhookconfiguration",
        WEBHOOK_NAME,
        "--type=json",
        "-p",
        &serde_json::to_string(&ops).unwrap(),
    ])
    .expect("a foreign CA in the caBundles");
    let broken_at = Instant::now();
    nudge(&secrets).await;
    poll("both webhook Pods not ready", MINUTE, || async {
        Ok(webhook_pods_ready(&node, false).await.then_some(()))
    })
    .await
    .expect("unready while the caBundle does not trust them");
    let unready_after = broken_at.elapsed();

    drop(restore);
    let repaired_at = Instant::now();
    wait_for_patch_permission(&node, true).await;
    nudge(&secrets).await;
    poll(
        "the caBundles hold the Secret's CA again",
        MINUTE,
        || async {
            let secret = tls_secret(&secrets).await;
            Ok(
                (configured_cas(&node).await == vec![secret.cas.clone(); ENTRIES.len()])
                    .then_some(()),
            )
        },
    )
    .await
    .expect("the controller repairs the caBundle once it may");
    poll("both webhook Pods ready", MINUTE, || async {
        Ok(webhook_pods_ready(&node, true).await.then_some(()))
    })
    .await
    .expect("ready again");
    require_deputy(&node, &ns.name)
        .await
        .expect("Pods are mutated again");
    let (unready_s, repaired_s) = (
        unready_after.as_secs_f64(),
        repaired_at.elapsed().as_secs_f64(),
    );
    figures::record(
        "untrusted",
        &format!(
            "with a foreign CA in the caBundles both replicas were unready after {unready_s:.1} s; \
             allowed to patch again, the controller restored the caBundle and both were ready and \
             injecting after {repaired_s:.1} s"
        ),
        json!({"unready_s": unready_s, "ready_again_s": repaired_s}),
    );
}

/// Scenario 9: a rolling update of an injected Deployment (2 replicas): the old Pods terminate
/// through the relay (callback ran, exit 0, no `FailedPreStopHook`), the new ones are injected.
#[tokio::test]
async fn rolling_update_terminates_old_pods_gracefully_and_injects_the_new_ones() {
    let node = node!("rolling_update_terminates_old_pods_gracefully_and_injects_the_new_ones");
    let _webhook = WEBHOOK.read().await;
    let ns = injected_namespace(&node, "ops-roll", &[]).await;
    let pods = ns.pods();
    let deployments: Api<Deployment> = Api::namespaced(node.client.clone(), &ns.name);
    let mut template = serde_json::to_value(demo_pod(
        DemoPod::new("unused", &["/app/deputy-app"]).args(&["--handler-sleep", "100ms"]),
    ))
    .unwrap();
    template["metadata"] = json!({"labels": {"app": "roll"}});
    template["spec"]["containers"][0]["env"] = json!([{"name": "ROLL", "value": "1"}]);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "roll"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "roll"}}, "template": template}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create the Deployment");

    let rolled_out = |value: &'static str| {
        let deployments = deployments.clone();
        let pods = pods.clone();
        async move {
            poll(
                &format!("the Deployment rolled out with ROLL={value}"),
                Duration::from_secs(120),
                || async {
                    let d = deployments.get("roll").await?;
                    let s = d.status.clone().unwrap_or_default();
                    let done = s.observed_generation == d.metadata.generation
                        && s.updated_replicas == Some(2)
                        && s.available_replicas == Some(2)
                        && s.replicas == Some(2);
                    if !done {
                        return Ok(None);
                    }
                    let list = pods.list(&ListParams::default().labels("app=roll")).await?;
                    let current: Vec<Pod> = list
                        .items
                        .into_iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .filter(|p| {
                            container(p, "app")
                                .env
                                .as_deref()
                                .unwrap_or_default()
                                .iter()
                                .any(|e| e.name == "ROLL" && e.value.as_deref() == Some(value))
                        })
                        .collect();
                    Ok((current.len() == 2).then_some(current))
                },
            )
            .await
        }
    };
    let old = rolled_out("1").await.unwrap_or_else(|e| panic!("{e:#}"));
    let old_names: Vec<String> = old.iter().filter_map(|p| p.metadata.name.clone()).collect();
    for p in &old {
        assert!(
            is_injected(p),
            "old Pod injected: {:?}",
            p.metadata.annotations
        );
    }
    for name in &old_names {
        poll(&format!("{name} ready"), MINUTE, || async {
            let logs = pods.logs(name, &Default::default()).await?;
            Ok(logs.contains("deputy-app: ready").then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    }

    // Follow the old Pods' logs and watch them until they are gone, then roll.
    let mut followers = Vec::new();
    for name in &old_names {
        followers.push((
            name.clone(),
            LogFollower::start(&pods, name)
                .await
                .expect("follow the log"),
        ));
    }
    let version = pods
        .list(&ListParams::default().labels("app=roll"))
        .await
        .unwrap()
        .metadata
        .resource_version
        .expect("a list has a resourceVersion");
    let mut events = pods
        .watch(
            &WatchParams::default().labels("app=roll").timeout(180),
            &version,
        )
        .await
        .expect("watch the Pods")
        .boxed();
    let watch_names = old_names.clone();
    let rolled_at = Instant::now();
    let watcher = tokio::spawn(async move {
        let mut exits: BTreeMap<String, Option<i32>> = BTreeMap::new();
        let mut gone: BTreeMap<String, Duration> = BTreeMap::new();
        while gone.len() < watch_names.len() {
            let Some(event) = events.try_next().await? else {
                anyhow::bail!("the watch ended; gone so far: {gone:?}");
            };
            let (pod, deleted) = match event {
                WatchEvent::Modified(p) | WatchEvent::Added(p) => (p, false),
                WatchEvent::Deleted(p) => (p, true),
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(e) => anyhow::bail!("watch error {e:?}"),
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if !watch_names.contains(&name) {
                continue;
            }
            if let Some(t) = terminated_state(pod, "app") {
                exits.insert(name.clone(), Some(t.exit_code));
            }
            if deleted {
                gone.insert(name, rolled_at.elapsed());
            }
        }
        Ok((exits, gone))
    });
    deployments
        .patch(
            "roll",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "ROLL", "value": "2"}]}
            ]}}}})),
        )
        .await
        .expect("change the env var");

    let new = rolled_out("2").await.unwrap_or_else(|e| panic!("{e:#}"));
    let (exits, gone) = tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("the old Pods are gone within 120 s")
        .expect("the watcher")
        .unwrap_or_else(|e| panic!("{e:#}"));
    for p in &new {
        let name = p.metadata.name.as_deref().unwrap_or_default();
        assert!(!old_names.iter().any(|o| o == name));
        assert_eq!(
            annotation(p, STATUS_ANNOTATION),
            Some("injected:app"),
            "new Pod {name} injected"
        );
        assert_eq!(
            init_names(p).first().map(String::as_str),
            Some("deputy-install"),
            "{name}"
        );
        assert!(touched_by_deputy(container(p, "app")), "{name}");
    }
    for (name, follower) in followers {
        let lines = follower
            .finish(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("the log of {name}: {e:#}"));
        let log = show(&lines);
        let asks =
            line_index(&lines, RELAY_ASKS).unwrap_or_else(|| panic!("{name}: no relay:\n{log}"));
        let ran = line_index(&lines, "deputy-app: shutdown handler ran")
            .unwrap_or_else(|| panic!("{name}: the handler never ran:\n{log}"));
        let done = line_index(&lines, RELAY_CLEAN)
            .unwrap_or_else(|| panic!("{name}: no clean exit:\n{log}"));
        assert!(
            asks < ran && ran < done,
            "{name}: relay, handler, exit 0 in that order:\n{log}"
        );
        assert_eq!(
            exits.get(&name).copied().flatten(),
            Some(0),
            "{name}: exit code; log:\n{log}"
        );
        let events = termination_events(&node, &ns.name, &name)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            !events.iter().any(|r| r == "FailedPreStopHook"),
            "{name}: {events:?}"
        );
    }
    let rolled = rolled_at.elapsed().as_secs_f64();
    let gone: BTreeMap<String, f64> = gone
        .into_iter()
        .map(|(p, t)| (p, t.as_secs_f64()))
        .collect();
    let new: Vec<String> = new.iter().filter_map(|p| p.metadata.name.clone()).collect();
    figures::record(
        "rollout",
        &format!(
            "2 injected replicas rolled in {rolled:.1} s; old Pods gone after {} (exit 0, handler ran in the preStop); new Pods {new:?} injected",
            gone.iter().map(|(p, t)| format!("{p} {t:.1} s")).collect::<Vec<_>>().join(", "),
        ),
        json!({"replicas": 2, "rolled_s": rolled, "old_gone_s": gone, "new_pods": new}),
    );
}

/// The webhook's own latency histogram, summed over its Pods.
async fn webhook_histogram(node: &Node, pods: &[String]) -> Histogram {
    let mut total = Histogram::default();
    for p in pods {
        let samples = metrics::pod(node, SYSTEM_NS, p, METRICS_PORT)
            .await
            .expect("the webhook's metrics");
        total.add(&Histogram::from_samples(
            &samples,
            "deputy_admission_duration_seconds",
            &[],
        ));
    }
    total
}

async fn api_server_histogram(node: &Node) -> Histogram {
    let samples = metrics::api_server(node)
        .await
        .expect("the API server's metrics");
    Histogram::from_samples(
        &samples,
        "apiserver_admission_webhook_admission_duration_seconds",
        &[
            ("name", ENTRIES[0]),
            ("type", "admit"),
            ("operation", "CREATE"),
        ],
    )
}

/// A histogram bucket's bound for a figure's values: seconds, or `"+Inf"` (JSON has no
/// infinity).
fn le(bound: f64) -> serde_json::Value {
    if bound.is_finite() {
        json!(bound)
    } else {
        json!("+Inf")
    }
}

fn ms(seconds: f64) -> String {
    if seconds.is_infinite() {
        "+Inf".into()
    } else {
        format!("{:.3} ms", seconds * 1e3)
    }
}

/// The benchmark (prints, asserts only that every Pod was mutated): 120 server-side dry-run Pods,
/// one after the other; the webhook's own latency histogram (sub-millisecond buckets), the API
/// server's admission-webhook histogram for the same calls (its smallest bucket is 5 ms), and
/// the client's round trip.
#[tokio::test]
async fn benchmark_admission_latency_over_120_pods() {
    let node = node!("benchmark_admission_latency_over_120_pods");
    let _webhook = WEBHOOK.write().await;
    let ns = injected_namespace(&node, "ops-bench", &[]).await;
    let pods = ns.pods();
    let replicas = webhook_pod_names(&node).await;
    // Warm both replicas' connections first.
    for i in 0..10 {
        let spec = demo_pod(DemoPod::new(&format!("warm-{i}"), &["/app/deputy-app"]));
        pods.create(&dry_run(), &spec).await.expect("warm-up");
    }
    let webhook_before = webhook_histogram(&node, &replicas).await;
    let api_before = api_server_histogram(&node).await;
    const N: usize = 120;
    let mut round_trips = Vec::with_capacity(N);
    for i in 0..N {
        let spec = demo_pod(DemoPod::new(&format!("bench-{i}"), &["/app/deputy-app"]));
        let started = Instant::now();
        let created = pods
            .create(&dry_run(), &spec)
            .await
            .expect("dry-run create");
        round_trips.push(started.elapsed());
        assert!(is_injected(&created), "bench-{i} mutated");
    }
    let webhook = webhook_histogram(&node, &replicas)
        .await
        .since(&webhook_before);
    let api = api_server_histogram(&node).await.since(&api_before);
    round_trips.sort();
    let pct = |q: f64| round_trips[((q * N as f64).ceil() as usize).clamp(1, N) - 1];

    let mut bounds: Vec<f64> = webhook
        .buckets
        .iter()
        .chain(api.buckets.iter())
        .map(|(le, _)| *le)
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    let cell = |h: &Histogram, le: f64| h.at(le).map_or("".to_owned(), |n| format!("{n}"));
    let mean_ms = |h: &Histogram| h.mean().map(|d| d.as_secs_f64() * 1e3);
    let shown = |mean: Option<f64>| mean.map_or("-".into(), |m| format!("{m:.3} ms"));
    let bound_ms = |h: &Histogram, q: f64| h.quantile_bound(q).map_or("-".into(), ms);
    let mut table = vec![
        format!("{N} Pod creations (server-side dry run), one at a time; cumulative counts per bucket"),
        "| le | deputy_admission_duration_seconds (webhook) | apiserver_admission_webhook_admission_duration_seconds |".to_owned(),
        "|---:|---:|---:|".to_owned(),
    ];
    for le in bounds {
        table.push(format!(
            "| {} | {} | {} |",
            ms(le),
            cell(&webhook, le),
            cell(&api, le)
        ));
    }
    table.push(format!(
        "| count / mean | {} / {} | {} / {} |",
        webhook.count,
        shown(mean_ms(&webhook)),
        api.count,
        shown(mean_ms(&api)),
    ));
    table.push(format!(
        "| p50 / p99 bucket bound | {} / {} | {} / {} |",
        bound_ms(&webhook, 0.5),
        bound_ms(&webhook, 0.99),
        bound_ms(&api, 0.5),
        bound_ms(&api, 0.99),
    ));
    let histogram = |h: &Histogram| {
        json!({
            "count": h.count,
            "mean_ms": mean_ms(h),
            "p50_bound_s": h.quantile_bound(0.5).map(le),
            "p99_bound_s": h.quantile_bound(0.99).map(le),
            "buckets": h.buckets.iter().map(|(b, n)| json!({"le_s": le(*b), "count": n})).collect::<Vec<_>>(),
        })
    };
    figures::record(
        "bench",
        &table.join("\n"),
        json!({"pods": N, "webhook": histogram(&webhook), "api_server": histogram(&api)}),
    );
    let ms_of = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99, max) = (ms_of(pct(0.5)), ms_of(pct(0.99)), ms_of(round_trips[N - 1]));
    figures::record(
        "bench",
        &format!(
            "client round trip of the dry-run create: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
        ),
        json!({"pods": N, "client_round_trip_ms": {"p50": p50, "p99": p99, "max": max}}),
    );
}
