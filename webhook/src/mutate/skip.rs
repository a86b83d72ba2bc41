//! Pod-level reasons to leave a Pod alone. Being called is the opt-in (the API server filtered by
//! labels); this re-checks only what the request itself shows.

use serde_json::Value;

use super::{get, PodContext, SkipReason, AGENT_VOLUME, INSTALL_CONTAINER, IPC_VOLUME};
use crate::config::{keys, InjectionConfig};

const SYSTEM_NAMESPACES: [&str; 3] = ["kube-system", "kube-public", "kube-node-lease"];

/// `Err((reason, warning for the user if one helps))` when the Pod must be left alone.
pub fn check(
    pod: &Value,
    ctx: &PodContext<'_>,
    config: &InjectionConfig,
) -> Result<(), (SkipReason, Option<String>)> {
    let spec_ok = get(pod, &["spec", "containers"]).is_some_and(Value::is_array);
    if !pod.is_object() || !spec_ok {
        return Err((
            SkipReason::InvalidPod,
            Some("k8s-deputy: the object has no spec.containers list; left unchanged".into()),
        ));
    }
    if !ctx.operation.eq_ignore_ascii_case("CREATE") {
        return Err((SkipReason::NotCreate, None));
    }
    if let Some(ns) = ctx.namespace {
        if SYSTEM_NAMESPACES.contains(&ns) {
            return Err((
                SkipReason::SystemNamespace,
                Some(format!(
                    "k8s-deputy: never injects into the system namespace {ns}"
                )),
            ));
        }
        if config.own_namespace.as_deref() == Some(ns) {
            return Err((SkipReason::OwnNamespace, None));
        }
    }
    let label = |key: &str| get(pod, &["metadata", "labels", key]).and_then(Value::as_str);
    let annotation =
        |key: &str| get(pod, &["metadata", "annotations", key]).and_then(Value::as_str);
    if label(keys::INJECT) == Some("false") {
        return Err((SkipReason::OptedOut, None));
    }
    if get(pod, &["metadata", "annotations", keys::MIRROR]).is_some() {
        return Err((SkipReason::MirrorPod, None));
    }
    let windows_os = get(pod, &["spec", "os", "name"]).and_then(Value::as_str) == Some("windows");
    let windows_node = get(pod, &["spec", "nodeSelector", "kubernetes.io/os"])
        .and_then(Value::as_str)
        == Some("windows");
    if windows_os || windows_node {
        return Err((
            SkipReason::Windows,
            Some("k8s-deputy: Windows Pods are not supported (the agent is a Linux binary); left unchanged".into()),
        ));
    }
    if annotation(keys::STATUS).is_some_and(|s| s.starts_with(super::STATUS_INJECTED)) {
        return Err((SkipReason::AlreadyInjected, None));
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
            return Err((
                SkipReason::NameConflict,
                Some(format!(
                    "k8s-deputy: spec.{list} already has an entry named {name:?}, which k8s-deputy needs; Pod left unchanged (rename yours to be injected)"
                )),
            ));
        }
    }
    Ok(())
}
