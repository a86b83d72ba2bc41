//! What gets injected: image, paths, sizes and resources. Defaults here; a `--config` YAML file
//! and the command-line flags override them (flags win). Validated once, then shared read-only by
//! the server and the `inject` command.

use std::time::Duration;

use serde::Deserialize;

/// Annotation and label keys: one prefix, one place.
pub mod keys {
    /// Label opting a Pod (`"true"`/`"false"`) or a namespace (`enabled`/`disabled`) in or out.
    pub const INJECT: &str = "k8s-deputy.io/inject";
    /// Annotation: comma-separated container names to target.
    pub const CONTAINERS: &str = "k8s-deputy.io/containers";
    /// Annotation: where the IPC directory is mounted (`/deputy/ipc` by default, or `/run`).
    pub const IPC_DIR: &str = "k8s-deputy.io/ipc-dir";
    /// Annotation: the preStop's `--timeout`, as a duration (`20s`).
    pub const TERMINATE_TIMEOUT: &str = "k8s-deputy.io/terminate-timeout";
    /// Annotation: the drain before the relay (`deputy-agent terminate --drain`); `0s` for none.
    pub const DRAIN: &str = "k8s-deputy.io/drain";
    /// Annotation: the adaptive drain's quiet period (`--drain-quiet`); `0s` for a fixed drain.
    pub const DRAIN_QUIET: &str = "k8s-deputy.io/drain-quiet";
    /// Annotation: `chain` runs an existing `exec`/`sleep` preStop first, then the relay.
    pub const EXISTING_PRESTOP: &str = "k8s-deputy.io/existing-prestop";
    /// Annotation: `wrap` rewrites `command` to run under `deputy-agent run`.
    pub const ENTRYPOINT: &str = "k8s-deputy.io/entrypoint";
    /// Annotation written by the webhook: `injected:<container>,...`.
    pub const STATUS: &str = "k8s-deputy.io/status";
    /// Kubernetes' mirror-Pod annotation (static Pods): never mutated.
    pub const MIRROR: &str = "kubernetes.io/config.mirror";
}

/// The injection settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectionConfig {
    /// Image holding the static agent at `/deputy-agent`.
    pub agent_image: String,
    /// `imagePullPolicy` of the init container (unset: Kubernetes' default).
    pub agent_image_pull_policy: Option<String>,
    /// Where the agent binary is mounted in every container.
    pub agent_dir: String,
    /// The default IPC mount path (the annotation may choose `/run`).
    pub ipc_dir: String,
    /// `sizeLimit` of the agent volume.
    pub agent_volume_size: String,
    /// `sizeLimit` of the in-memory IPC volume (counts against the memory limit).
    pub ipc_volume_size: String,
    /// Requests and limits of the init container.
    pub init_cpu_request: String,
    /// Memory request of the init container.
    pub init_memory_request: String,
    /// Memory limit of the init container.
    pub init_memory_limit: String,
    /// CPU limit of the init container, only if set (namespaces with CPU-limit quotas need it).
    pub init_cpu_limit: Option<String>,
    /// UID for the init container when the Pod runs as root, so `runAsNonRoot` holds.
    pub init_non_root_uid: i64,
    /// The webhook's own namespace, never injected.
    pub own_namespace: Option<String>,
    /// The drain of Pods that do not annotate one: fixed, or the adaptive drain's maximum.
    #[serde(with = "humantime_serde")]
    pub drain: Duration,
    /// The adaptive drain's quiet period for Pods that do not annotate one (None: fixed).
    #[serde(with = "humantime_serde")]
    pub drain_quiet: Option<Duration>,
}

/// `--drain` by default: well past what in-cluster endpoint propagation takes, and inside the
/// default 30 s grace period with the relay's reserve.
pub const DEFAULT_DRAIN: Duration = Duration::from_secs(15);
/// `--drain-quiet` by default: longer than kube-proxy's 1 s minimum sync period plus watch
/// delay, so a quiet Pod still waits until its endpoints are gone everywhere in the cluster;
/// what a worker Pod without inbound traffic pays.
pub const DEFAULT_DRAIN_QUIET: Duration = Duration::from_secs(3);

impl Default for InjectionConfig {
    fn default() -> Self {
        Self {
            agent_image: String::new(),
            agent_image_pull_policy: None,
            agent_dir: "/deputy/bin".into(),
            ipc_dir: "/deputy/ipc".into(),
            agent_volume_size: "16Mi".into(),
            ipc_volume_size: "1Mi".into(),
            init_cpu_request: "10m".into(),
            init_memory_request: "16Mi".into(),
            init_memory_limit: "32Mi".into(),
            init_cpu_limit: None,
            init_non_root_uid: 65532,
            own_namespace: None,
            drain: DEFAULT_DRAIN,
            drain_quiet: Some(DEFAULT_DRAIN_QUIET),
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// No agent image.
    #[error("--agent-image must be set (the image that holds /deputy-agent)")]
    MissingAgentImage,
    /// A path that must be absolute is not.
    #[error("{field} must be an absolute path, got {value:?}")]
    RelativePath {
        /// The setting.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The pull policy is not one Kubernetes knows.
    #[error("--agent-image-pull-policy must be Always, IfNotPresent or Never, got {0:?}")]
    PullPolicy(String),
    /// The non-root UID is root.
    #[error("initNonRootUid must be a non-zero UID, got {0}")]
    RootUid(i64),
    /// The quiet period is not below the drain it ends early.
    #[error("--drain-quiet ({quiet:?}) must be shorter than --drain ({drain:?}), or 0s for a fixed drain")]
    DrainQuiet {
        /// `--drain`.
        drain: Duration,
        /// `--drain-quiet`.
        quiet: Duration,
    },
}

impl InjectionConfig {
    /// Checks the settings; every error names the setting and what is expected.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.agent_image.trim().is_empty() {
            return Err(ConfigError::MissingAgentImage);
        }
        for (field, value) in [("agentDir", &self.agent_dir), ("ipcDir", &self.ipc_dir)] {
            if !value.starts_with('/') {
                return Err(ConfigError::RelativePath {
                    field,
                    value: value.clone(),
                });
            }
        }
        if let Some(policy) = &self.agent_image_pull_policy {
            if !matches!(policy.as_str(), "Always" | "IfNotPresent" | "Never") {
                return Err(ConfigError::PullPolicy(policy.clone()));
            }
        }
        if self.init_non_root_uid <= 0 {
            return Err(ConfigError::RootUid(self.init_non_root_uid));
        }
        if let Some(quiet) = self.drain_quiet {
            if !quiet.is_zero() && !self.drain.is_zero() && quiet >= self.drain {
                return Err(ConfigError::DrainQuiet {
                    drain: self.drain,
                    quiet,
                });
            }
        }
        Ok(())
    }

    /// The agent's path inside app containers.
    pub fn agent_path(&self) -> String {
        format!("{}/deputy-agent", self.agent_dir.trim_end_matches('/'))
    }
}
