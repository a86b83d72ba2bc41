//! The Helm chart `charts/k8s-deputy` and the real `helm` that tests it (built from its Go module
//! by `harness.sh tool helm`, which `harness.sh test` exports as `$E2E_HELM`), and the rendered
//! objects of a chart or a kustomization as kubectl reads them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository's chart, found at run time (as [`crate::manifests::manifests_dir`]).
pub fn chart_dir() -> PathBuf {
    crate::manifests::manifests_dir().join("../charts/k8s-deputy")
}

/// The `helm` binary: `$E2E_HELM`; None (after skipping loudly, or failing under E2E_REQUIRED)
/// when it is not set.
pub fn helm_binary(test: &str) -> Option<PathBuf> {
    match std::env::var_os("E2E_HELM") {
        Some(path) if Path::new(&path).is_file() => Some(PathBuf::from(path)),
        other => {
            crate::skip_or_fail(&format!(
                "chart test {test}: helm is missing (E2E_HELM={other:?}); `make e2e-test` builds it \
                 (tests/e2e/harness.sh tool helm prints its path)"
            ));
            None
        }
    }
}

/// What one helm command did.
#[derive(Debug)]
pub struct HelmOutput {
    /// Exit status 0.
    pub success: bool,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// Runs `helm args` with `kubeconfig` (if any) and Helm's own state in a scratch home, so a test
/// never reads or writes the caller's Helm configuration.
pub fn helm(binary: &Path, kubeconfig: Option<&Path>, args: &[&str]) -> HelmOutput {
    let home = std::env::temp_dir().join("deputy-e2e-helm-home");
    let mut command = Command::new(binary);
    command
        .args(args)
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_DATA_HOME", home.join("data"));
    match kubeconfig {
        Some(path) => command.env("KUBECONFIG", path),
        None => command.env_remove("KUBECONFIG"),
    };
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
    HelmOutput {
        success: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Multi-document YAML (what `helm template` and `kubectl kustomize` print) as objects keyed by
/// `Kind/namespace/name`; empty documents are dropped.
pub fn objects(yaml: &str) -> BTreeMap<String, Value> {
    let stream = deputy_yaml::parse(yaml).unwrap_or_else(|e| panic!("{e}:\n{yaml}"));
    stream
        .documents
        .iter()
        .map(deputy_yaml::Node::to_json)
        .filter(|doc| !doc.is_null())
        .map(|doc| {
            let key = format!(
                "{}/{}/{}",
                doc["kind"].as_str().unwrap_or("?"),
                doc["metadata"]["namespace"].as_str().unwrap_or(""),
                doc["metadata"]["name"].as_str().unwrap_or("?")
            );
            (key, doc)
        })
        .collect()
}

/// The labels Helm's conventions add to every object of the chart (the kustomize overlays have
/// none of them).
pub const HELM_LABELS: [&str; 4] = [
    "app.kubernetes.io/managed-by",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "helm.sh/chart",
];

/// A chart's objects without `helm test` hooks and without [`HELM_LABELS`]: what must equal the
/// kustomize overlay's objects for the same settings.
pub fn without_helm_conventions(mut objects: BTreeMap<String, Value>) -> BTreeMap<String, Value> {
    objects.retain(|_, o| o["metadata"]["annotations"]["helm.sh/hook"].is_null());
    for object in objects.values_mut() {
        if let Some(labels) = object["metadata"]["labels"].as_object_mut() {
            for label in HELM_LABELS {
                labels.remove(label);
            }
        }
    }
    objects
}
