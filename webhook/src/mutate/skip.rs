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
    let windows_os = get(pod, &["spec", "os", "name"]).and_then(Value::as_str) == Some("windows");
    let windows_node = get(pod, &["spec", "nodeSelector", "kubernetes.io/os"])
        .and_then(Value::as_str)
        == Some("windows");
    if windows_os || windows_node {
        return Some((
            SkipReason::Windows,
            Some(warning(format_args!(
                "Windows Pods are not supported (the agent is a Linux binary); left unchanged"
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
