//! `deputy-webhook self-test`: asks the API server to create, as a dry run, a Pod opted in by
//! label, and checks that it comes back injected. It goes the way every real Pod goes (API
//! server → webhook configuration → Service → a webhook replica), so it proves the installation,
//! not just the process: `helm test` runs it from inside the cluster. A dry run persists nothing.

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use kube::Client;

use crate::config::keys;
use crate::mutate::STATUS_INJECTED;

/// What the dry-run Pod came back with.
#[derive(Debug)]
pub struct Injected {
    /// Its `k8s-deputy.io/status` annotation.
    pub status: String,
    /// Its init containers' names.
    pub init_containers: Vec<String>,
    /// Its app container's preStop command.
    pub prestop: Vec<String>,
}

/// Why the self-test failed.
#[derive(Debug, thiserror::Error)]
pub enum SelfTestError {
    /// No async runtime.
    #[error("cannot start a runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// No API server.
    #[error("cannot reach the API server (in-cluster config or KUBECONFIG): {0}")]
    NoApi(#[source] kube::Error),
    /// The API server refused the dry run.
    #[error("the API server refused the dry-run Pod in namespace {namespace}: {source}")]
    Create {
        /// Where.
        namespace: String,
        /// The API's answer.
        #[source]
        source: kube::Error,
    },
    /// Admitted, but not injected.
    #[error(
        "the dry-run Pod in namespace {namespace} was admitted unmutated ({what}): the webhook did not answer \
         (with failurePolicy Ignore the API server then admits Pods unmutated: see the webhook's Pods, their \
         logs, and the API server's apiserver_admission_webhook_fail_open_count), or the namespace is not \
         opted in for Pod labels (it must be labelled neither k8s-deputy.io/inject=enabled nor disabled)"
    )]
    NotInjected {
        /// Where.
        namespace: String,
        /// What is missing.
        what: String,
    },
}

/// The dry-run Pod: opted in by its label, and valid under the `restricted` Pod Security
/// Standard, so that no other admission step refuses it.
fn probe_pod(image: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": "deputy-self-test",
            "labels": {keys::INJECT: "true", "app.kubernetes.io/name": "deputy-self-test"},
        },
        "spec": {
            "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app",
                "image": image,
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }))
    .expect("a valid Pod")
}

/// Creates the dry-run Pod in `namespace` and checks that it was injected.
pub fn run(namespace: &str, image: &str) -> Result<Injected, SelfTestError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(SelfTestError::Runtime)?;
    runtime.block_on(async {
        let client = Client::try_default().await.map_err(SelfTestError::NoApi)?;
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let params = PostParams {
            dry_run: true,
            field_manager: Some("deputy-webhook-self-test".into()),
        };
        let pod = pods
            .create(&params, &probe_pod(image))
            .await
            .map_err(|source| SelfTestError::Create {
                namespace: namespace.to_owned(),
                source,
            })?;
        check(&pod).map_err(|what| SelfTestError::NotInjected {
            namespace: namespace.to_owned(),
            what,
        })
    })
}

/// What the webhook must have added; Err names what is missing.
fn check(pod: &Pod) -> Result<Injected, String> {
    let status = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(keys::STATUS))
        .cloned()
        .ok_or_else(|| format!("no {} annotation", keys::STATUS))?;
    if !status.starts_with(STATUS_INJECTED) {
        return Err(format!("{}: {status:?}", keys::STATUS));
    }
    let spec = pod.spec.as_ref().ok_or("no spec")?;
    let init_containers: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    let prestop = spec
        .containers
        .first()
        .and_then(|c| {
            c.lifecycle
                .as_ref()?
                .pre_stop
                .as_ref()?
                .exec
                .as_ref()?
                .command
                .clone()
        })
        .ok_or("no preStop exec hook on the app container")?;
    if init_containers.is_empty() {
        return Err("no init container".into());
    }
    Ok(Injected {
        status,
        init_containers,
        prestop,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unmutated_pod_fails_the_check_naming_the_annotation() {
        let err = check(&probe_pod("pause")).unwrap_err();
        assert!(err.contains(keys::STATUS), "{err}");
    }

    #[test]
    fn the_probe_pod_injected_by_the_engine_passes_the_check() {
        let config = crate::config::InjectionConfig {
            agent_image: "agent:1".into(),
            ..Default::default()
        };
        let pod = serde_json::to_string(&probe_pod("pause")).unwrap();
        let (mutated, _, _) = crate::inject::inject_str(&pod, &config).expect("injected");
        let injected = check(&serde_json::from_str(&mutated).unwrap()).expect("passes");
        assert!(
            injected.prestop.iter().any(|a| a.contains("deputy-agent")),
            "{injected:?}"
        );
    }
}
