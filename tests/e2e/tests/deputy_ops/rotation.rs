//! Scenario 8: the webhook's CA rotated under load (`k8s-deputy.io/rotate` on its Secret: the
//! steps of a scheduled renewal), followed through the API, the replicas' metrics and a new TLS
//! handshake with each replica; and the handshake's probe itself, proven without a node.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use deputy_e2e::deputy::{
    fail_open_count, injected_namespace, webhook_pod_names, webhook_pods, SYSTEM_NS, WEBHOOK_NAME,
};
use deputy_e2e::figures;
use deputy_e2e::injection::is_injected;
use deputy_e2e::pods::{demo_pod, dry_run, DemoPod};
use deputy_e2e::tls::{
    self, annotate_tls_secret, configured_cas, tls_secret, tls_state, Certificate,
};
use deputy_e2e::{node, unique, NODE_NETNS};
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use serde_json::json;

use crate::WEBHOOK;

/// The suite's tool binary, for its `relay` (the TLS probe's connection in the node's network
/// namespace).
const TOOL_BINARY: &str = env!("CARGO_BIN_EXE_deputy-e2e-tool");

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
    use std::sync::Arc;

    let name = format!("{WEBHOOK_NAME}.{SYSTEM_NS}.svc");
    let issued = tls::issue("probe", &name);
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
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
    let config = Arc::new(config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    // Not joined: a probe that never connects would leave it waiting.
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            let mut server = rustls::ServerConnection::new(config.clone()).unwrap();
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
            "new_ca_in_secret_s": ca_added.as_secs_f64(),
            "new_ca_configured_s": configured.as_secs_f64(),
            "new_leaf_in_secret_s": leaf_written.as_secs_f64(), "new_leaf_served_s": served,
            "old_ca_dropped_s": dropped.as_secs_f64(), "handshakes_verified": handshakes,
            "fail_open_before": fail_open_before, "fail_open_after": fail_open_after,
            "secret_writes": writes_after - writes_before,
        }),
    );
}
