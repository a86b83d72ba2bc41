//! A throwaway mutating webhook for tests: the suite's tool image (`deputy-e2e-tool webhook`)
//! behind a Service, with a CA and serving certificate made here; and a guard that deletes a
//! cluster-scoped object (such as its configuration) even when the test fails.

use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::{Api, PostParams};
use serde_json::json;

use crate::{pod, wait_running, Node, TestNamespace, TOOL};

/// Runs the tool's webhook as Pod `name` behind the Service `e2e-<name>` in `ns` (port 443),
/// with `args` added to `webhook --cert ... --key ... --port 8443`, serving a certificate for
/// `e2e-<name>.<ns>.svc`; returns once the Pod runs, with the CA's PEM for the `caBundle`.
pub async fn serve(node: &Node, ns: &TestNamespace, name: &str, args: &[&str]) -> String {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("deputy-e2e {name} CA"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let service = format!("e2e-{name}");
    let cert = rcgen::CertificateParams::new(vec![format!("{service}.{}.svc", ns.name)])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let secret_name = format!("{name}-tls");
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": secret_name}, "type": "kubernetes.io/tls",
        "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()}
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
    ca.pem()
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
