//! What the webhook did to a Pod, read from the Pod the API server returned: the status
//! annotation, init containers, volumes, and each container's mounts, env and preStop hook.

use k8s_openapi::api::core::v1::{Container, Pod};

/// The annotation the webhook writes on every Pod it injects.
pub const STATUS_ANNOTATION: &str = "k8s-deputy.io/status";

/// A Pod annotation's value.
pub fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// Whether the webhook injected the Pod (its status annotation reads `injected:...`).
pub fn is_injected(pod: &Pod) -> bool {
    annotation(pod, STATUS_ANNOTATION).is_some_and(|s| s.starts_with("injected:"))
}

/// The names of the Pod's init containers, in order.
pub fn init_names(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref().expect("a Pod has a spec");
    spec.init_containers
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| c.name.clone())
        .collect()
}

/// The names of the Pod's volumes, in order.
pub fn volume_names(pod: &Pod) -> Vec<String> {
    let spec = pod.spec.as_ref().expect("a Pod has a spec");
    spec.volumes
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|v| v.name.clone())
        .collect()
}

/// The Pod's container `name`; panics when there is none.
pub fn container<'a>(pod: &'a Pod, name: &str) -> &'a Container {
    let spec = pod.spec.as_ref().expect("a Pod has a spec");
    spec.containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("the Pod has a container {name}"))
}

/// The command of the container's `exec` preStop hook (empty when it has none).
pub fn prestop(c: &Container) -> Vec<String> {
    c.lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .and_then(|h| h.exec.as_ref())
        .and_then(|e| e.command.clone())
        .unwrap_or_default()
}

/// Whether the container got any part of the injection (mounts, env or our preStop).
pub fn touched_by_deputy(c: &Container) -> bool {
    let mounts = c
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|m| m.name.starts_with("deputy-"));
    let env = c
        .env
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|e| e.name == "DEPUTY_IPC_DIR");
    let hook = prestop(c).first().map(String::as_str) == Some("/deputy/bin/deputy-agent");
    mounts || env || hook
}

/// The names of the container's mounts of our volumes, sorted.
pub fn deputy_mounts(c: &Container) -> Vec<&str> {
    let mut names: Vec<&str> = c
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|m| m.name.as_str())
        .filter(|n| n.starts_with("deputy-"))
        .collect();
    names.sort();
    names
}
