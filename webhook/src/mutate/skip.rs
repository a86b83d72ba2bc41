//! Pod-level reasons to leave a Pod alone. Being called is the opt-in (the API server filtered by
//! labels); this re-checks only what the request itself shows.

use serde_json::Value;

use super::{get, warning, PodContext, SkipReason, AGENT_VOLUME, INSTALL_CONTAINER, IPC_VOLUME};
use crate::config::{keys, InjectionConfig};

const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// `Some((reason, warning for the user if one helps))` when the Pod must be left alone.
pub fn check(
    pod: &Value,
    ctx: &PodContext<'_>,
    config: &InjectionConfig,
) -> Option<(SkipReason, Option<String>)> {
    let spec_ok = get(pod, &["spec", "containers"]).is_some_and(Value::is_array);
    if !pod.is_object() || !spec_ok {
        return Some((
            SkipReason::InvalidPod,
            Some(warning(format_args!(
                "the object has no spec.containers list; left unchanged"
            ))),
        ));
    }
    if !ctx.operation.eq_ignore_ascii_case("CREATE") {
        return Some((SkipReason::NotCreate, None));
    }
    if let Some(ns) = ctx.namespace {
        if SYSTEM_NAMESPACES.contains(&ns) {
            return Some((
                SkipReason::SystemNamespace,
                Some(warning(format_args!(
                    "never injects into the system namespace {ns}"
                ))),
            ));
        }
        if config.own_namespace.as_deref() == Some(ns) {
            return Some((SkipReason::OwnNamespace, None));
        }
    }
    let label = |key: &str| get(pod, &["metadata", "labels", key]).and_then(Value::as_str);
    let annotation =
        |key: &str| get(pod, &["metadata", "annotations", key]).and_then(Value::as_str);
    if label(keys::INJECT) == Some("false") {
        return Some((SkipReason::OptedOut, None));
    }
    if get(pod, &["metadata", "annotations", keys::MIRROR]).is_some() {
        return Some((SkipReason::MirrorPod, None));
    }
    if let Some(marker) = windows_marker(pod) {
        return Some((
            SkipReason::Windows,
            Some(warning(format_args!(
                "Windows Pods are not supported (the agent is a Linux binary); left unchanged ({marker})"
            ))),
        ));
    }
    if annotation(keys::STATUS).is_some_and(|s| s.starts_with(super::STATUS_INJECTED)) {
        return Some((SkipReason::AlreadyInjected, None));
    }
    let named = |list: &str, name: &str| {
        get(pod, &["spec", list])
            .and_then(Value::as_array)
            .is_some_and(|items| items.iter().any(|i| i["name"] == name))
    };
    for (list, name) in [
        ("volumes", AGENT_VOLUME),
        ("volumes", IPC_VOLUME),
        ("initContainers", INSTALL_CONTAINER),
        ("containers", INSTALL_CONTAINER),
    ] {
        if named(list, name) {
            return Some((
                SkipReason::NameConflict,
                Some(warning(format_args!(
                    "spec.{list} already has an entry named {name:?}, which k8s-deputy needs; Pod left unchanged (rename yours to be injected)"
                ))),
            ));
        }
    }
    None
}

/// The node OS labels a Pod can select Windows with (`beta.` is deprecated, still honoured).
const OS_LABELS: [&str; 2] = ["kubernetes.io/os", "beta.kubernetes.io/os"];

/// What marks the Pod as one that runs only on Windows nodes, if anything does.
fn windows_marker(pod: &Value) -> Option<String> {
    let spec = &pod["spec"];
    if spec["os"]["name"] == "windows" {
        return Some("spec.os.name is windows".into());
    }
    for label in OS_LABELS {
        if spec["nodeSelector"][label] == "windows" {
            return Some(format!("its nodeSelector asks for {label}: windows"));
        }
    }
    if spec["securityContext"]["windowsOptions"].is_object() {
        return Some("spec.securityContext.windowsOptions is set".into());
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        let containers = spec[list].as_array().map(Vec::as_slice).unwrap_or_default();
        for container in containers {
            if container["securityContext"]["windowsOptions"].is_object() {
                return Some(format!(
                    "container {:?} sets securityContext.windowsOptions",
                    container["name"].as_str().unwrap_or_default()
                ));
            }
        }
    }
    let terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        ["nodeSelectorTerms"]
        .as_array()?;
    // The terms are alternatives: Windows only when every one of them requires it.
    let requires_windows = |term: &Value| {
        term["matchExpressions"].as_array().is_some_and(|exprs| {
            exprs.iter().any(|e| {
                let values = e["values"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                e["key"].as_str().is_some_and(|k| OS_LABELS.contains(&k))
                    && e["operator"] == "In"
                    && !values.is_empty()
                    && values.iter().all(|v| v == "windows")
            })
        })
    };
    (!terms.is_empty() && terms.iter().all(requires_windows))
        .then(|| "its required node affinity selects kubernetes.io/os In [windows]".into())
}

#[cfg(test)]
mod tests {
    use super::windows_marker;
    use serde_json::json;

    fn spec(spec: serde_json::Value) -> serde_json::Value {
        json!({"spec": spec})
    }

    #[test]
    fn every_windows_marker_is_recognised_and_linux_pods_are_not() {
        let windows = [
            json!({"os": {"name": "windows"}}),
            json!({"nodeSelector": {"kubernetes.io/os": "windows"}}),
            json!({"nodeSelector": {"beta.kubernetes.io/os": "windows"}}),
            json!({"securityContext": {"windowsOptions": {"runAsUserName": "ContainerUser"}}}),
            json!({"containers": [{"name": "a"}, {"name": "b", "securityContext": {"windowsOptions": {"hostProcess": true}}}]}),
            json!({"initContainers": [{"name": "i", "securityContext": {"windowsOptions": {}}}]}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["windows"]}]}
            ]}}}}),
        ];
        for pod in windows {
            assert!(windows_marker(&spec(pod.clone())).is_some(), "{pod}");
        }
        let linux = [
            json!({"nodeSelector": {"kubernetes.io/os": "linux"}}),
            json!({"securityContext": {"runAsNonRoot": true}}),
            // One term allows Linux nodes: the Pod may land there.
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["windows"]}]},
                {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}
            ]}}}}),
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["windows", "linux"]}]}
            ]}}}}),
            json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["windows"]}]}}
            ]}}}),
        ];
        for pod in linux {
            assert_eq!(windows_marker(&spec(pod.clone())), None, "{pod}");
        }
    }
}
