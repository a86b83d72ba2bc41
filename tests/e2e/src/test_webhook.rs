//! A throwaway mutating webhook for tests: the suite's tool image (`deputy-e2e-tool webhook`)
//! behind a Service, with a CA and serving certificate made here; its configuration, registered
//! with the API server; and a guard that deletes a cluster-scoped object (such as that
//! configuration) even when the test fails.

use base64::Engine;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, PostParams};
use serde_json::{json, Value};

use crate::pods::pod;
use crate::{wait_running, Node, TestNamespace, TOOL};

/// Runs the tool's webhook as Pod `name` behind the Service `e2e-<name>` in `ns` (port 443),
/// with `args` added to `webhook --cert ... --key ... --port 8443`, serving a certificate for
/// `e2e-<name>.<ns>.svc`; returns once the Pod runs, with the CA's PEM for the `caBundle`.
pub async fn serve(node: &Node, ns: &TestNamespace, name: &str, args: &[&str]) -> String {
    let service = format!("e2e-{name}");
    let issued = crate::tls::issue(name, &format!("{service}.{}.svc", ns.name));
    let secret_name = format!("{name}-tls");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": secret_name}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": issued.cert, "tls.key": issued.key}
    }))
    .unwrap();
    Api::<Secret>::namespaced(node.client.clone(), &ns.name)
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let mut all = vec![
        "webhook",
        "--cert",
        "/tls/tls.crt",
        "--key",
        "/tls/tls.key",
        "--port",
        "8443",
    ];
    all.extend_from_slice(args);
    let server = pod(json!({
        "metadata": {"name": name, "labels": {"app": service}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "webhook", "image": TOOL, "imagePullPolicy": "Never", "args": all,
                "ports": [{"containerPort": 8443}],
                "readinessProbe": {"tcpSocket": {"port": 8443}, "periodSeconds": 1},
                "volumeMounts": [{"name": "tls", "mountPath": "/tls", "readOnly": true}]
            }],
            "volumes": [{"name": "tls", "secret": {"secretName": secret_name}}]
        }
    }));
    ns.pods()
        .create(&PostParams::default(), &server)
        .await
        .unwrap();
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": service},
        "spec": {"selector": {"app": service}, "ports": [{"port": 443, "targetPort": 8443}]}
    }))
    .unwrap();
    Api::<Service>::namespaced(node.client.clone(), &ns.name)
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    wait_running(&ns.pods(), name, std::time::Duration::from_secs(60))
        .await
        .expect("the test webhook runs (its image, localhost/deputy-e2e-tool:e2e, is built and imported by `harness.sh test`)");
    issued.ca
}

/// A MutatingWebhookConfiguration `name` with one entry `entry` that sends the creation of every
/// Pod in a namespace labelled `label` (key, value) to the webhook [`serve`] runs as `server` in
/// `ns`, trusting `ca_pem`, failing closed. The test may change it before [`register`]ing it.
pub fn configuration(
    name: &str,
    entry: &str,
    (ns, server): (&TestNamespace, &str),
    ca_pem: &str,
    (key, value): (&str, &str),
) -> Value {
    json!({
        "metadata": {"name": name},
        "webhooks": [{
            "name": entry,
            "clientConfig": {
                "service": {"namespace": ns.name, "name": format!("e2e-{server}"), "path": "/mutate", "port": 443},
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes()),
            },
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}],
            "namespaceSelector": {"matchLabels": {key: value}},
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 10
        }]
    })
}

/// Creates the [`configuration`]; it is deleted when the returned guard drops.
pub async fn register(node: &Node, configuration: Value) -> DeleteOnDrop<'_> {
    let configuration: MutatingWebhookConfiguration =
        serde_json::from_value(configuration).expect("a valid MutatingWebhookConfiguration");
    let name = configuration.metadata.name.clone().unwrap_or_default();
    Api::<MutatingWebhookConfiguration>::all(node.client.clone())
        .create(&PostParams::default(), &configuration)
        .await
        .unwrap_or_else(|e| panic!("create the MutatingWebhookConfiguration {name}: {e}"));
    DeleteOnDrop(node, "mutatingwebhookconfiguration", name)
}

/// Deletes a cluster-scoped object (`kubectl delete KIND NAME`) when dropped, so a failed test
/// leaves no webhook configuration behind.
#[derive(Debug)]
pub struct DeleteOnDrop<'a>(pub &'a Node, pub &'static str, pub String);

impl Drop for DeleteOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self
            .0
            .kubectl(&["delete", self.1, &self.2, "--ignore-not-found"]);
    }
}
