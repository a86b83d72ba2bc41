//! The webhook's own TLS Secret (`--tls-secret`) beyond a rotation: kept by a re-apply of the
//! manifests and refilled once when emptied; and the readiness net, replicas unready while the
//! caBundle does not trust them.

use std::time::Instant;

use base64::Engine;
use deputy_e2e::deputy::{
    injected_namespace, require_deputy, webhook_pod_names, webhook_pods_ready, ENTRIES,
    METRICS_PORT, SYSTEM_NS, WEBHOOK_NAME,
};
use deputy_e2e::figures;
use deputy_e2e::injection::is_injected;
use deputy_e2e::manifests::manifests_dir;
use deputy_e2e::metrics;
use deputy_e2e::pods::{demo_pod, dry_run, DemoPod};
use deputy_e2e::tls::{
    self, annotate_tls_secret, configured_cas, tls_secret, tls_state, Certificate, TLS_SECRET,
};
use deputy_e2e::{node, poll, unique, Node, MINUTE};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::WEBHOOK;

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
        json!({
            "refilled_s": refilled_s, "mutated_again_s": mutated_s,
            "initial_writes": initial_after - initial_before,
        }),
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
