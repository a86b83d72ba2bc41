//! Pod builders: manifests written the way a user would write them (a busybox container running
//! a script, the demo image's restricted Pods), and the parameters of a server-side dry run.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use serde_json::{json, Value};

use crate::BUSYBOX;

/// The demo image (`scripts/e2e-deploy.sh`): busybox in `/bin`, `/app/deputy-app`,
/// `/app/julia-like`, `/app/shell-app.sh`; user 65532; `/var/run` is a symlink to `/run`.
pub const DEMO: &str = "localhost/deputy-demo:e2e";

/// Builds a Pod from JSON (the tests write manifests the way a user would).
pub fn pod(json: Value) -> Pod {
    serde_json::from_value(json).expect("a valid Pod manifest")
}

/// A container that runs `script` in busybox as its user 65534.
pub fn sh(name: &str, script: &str) -> Value {
    json!({
        "name": name, "image": BUSYBOX, "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", script],
    })
}

/// Parameters of a server-side dry run: every admission plugin runs, nothing is stored.
pub fn dry_run() -> PostParams {
    PostParams {
        dry_run: true,
        ..PostParams::default()
    }
}

/// A Pod of the demo image, restricted-PSS compliant with a read-only root filesystem.
#[derive(Debug, Clone)]
pub struct DemoPod {
    /// The Pod's name; its one container is `app`.
    pub name: String,
    /// `command` of the container.
    pub command: Vec<String>,
    /// `args` of the container.
    pub args: Vec<String>,
    /// `terminationGracePeriodSeconds`.
    pub grace: Duration,
    /// Pod annotations.
    pub annotations: Vec<(String, String)>,
    /// Pod labels.
    pub labels: Vec<(String, String)>,
}

impl DemoPod {
    /// A Pod running `command`, grace 30 s, no annotations.
    pub fn new(name: &str, command: &[&str]) -> DemoPod {
        DemoPod {
            name: name.to_owned(),
            command: command.iter().map(|s| s.to_string()).collect(),
            args: Vec::new(),
            grace: Duration::from_secs(30),
            annotations: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// With these container `args`.
    pub fn args(mut self, args: &[&str]) -> DemoPod {
        self.args = args.iter().map(|s| s.to_string()).collect();
        self
    }

    /// With this grace period.
    pub fn grace(mut self, grace: Duration) -> DemoPod {
        self.grace = grace;
        self
    }

    /// With one more annotation.
    pub fn annotation(mut self, key: &str, value: &str) -> DemoPod {
        self.annotations.push((key.to_owned(), value.to_owned()));
        self
    }

    /// With one more label.
    pub fn label(mut self, key: &str, value: &str) -> DemoPod {
        self.labels.push((key.to_owned(), value.to_owned()));
        self
    }
}

/// The Pod manifest, written as a user would.
pub fn demo_pod(spec: DemoPod) -> Pod {
    let map = |pairs: &[(String, String)]| -> Value {
        pairs
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    pod(json!({
        "metadata": {
            "name": spec.name,
            "annotations": map(&spec.annotations),
            "labels": map(&spec.labels),
        },
        "spec": {
            "terminationGracePeriodSeconds": spec.grace.as_secs(),
            "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "app",
                "image": DEMO,
                "imagePullPolicy": "Never",
                "command": spec.command,
                "args": spec.args,
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
            }],
        },
    }))
}
