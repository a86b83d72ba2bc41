//! The mutation engine: Pod JSON and configuration in; a JSON Patch, warnings and an outcome out.
//! Pure — no I/O, no clock, no globals — so the server, `inject` and the tests share it.
//!
//! It works on the raw request JSON (fields unknown to our types survive), emits only targeted
//! `add` operations (plus `replace` for the explicit opt-ins `wrap` and `chain`), and never
//! touches a container it does not target or one that already has a preStop hook.

mod containers;
mod drain;
mod patch;
mod skip;

use std::fmt;

use serde_json::{json, Value};

use crate::config::{keys, InjectionConfig};

use containers::ContainerPlan;
pub use containers::{Role, Target};
pub use patch::{get, PatchBuilder};

/// Name of the volume holding the agent binary.
pub const AGENT_VOLUME: &str = "deputy-agent";
/// Name of the in-memory IPC volume.
pub const IPC_VOLUME: &str = "deputy-ipc";
/// Name of the init container that installs the agent.
pub const INSTALL_CONTAINER: &str = "deputy-install";
/// Prefix of the status annotation's value.
pub const STATUS_INJECTED: &str = "injected";

/// What the request says besides the Pod.
#[derive(Debug, Clone, Copy, Default)]
pub struct PodContext<'a> {
    /// `request.namespace` (or the document's namespace offline).
    pub namespace: Option<&'a str>,
    /// `request.operation` (`CREATE`, ...).
    pub operation: &'a str,
}

/// Why a Pod was left alone. Each has a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Not a CREATE.
    NotCreate,
    /// `kube-system`, `kube-public` or `kube-node-lease`.
    SystemNamespace,
    /// The webhook's own namespace.
    OwnNamespace,
    /// Labelled `k8s-deputy.io/inject: "false"`.
    OptedOut,
    /// A static Pod's mirror.
    MirrorPod,
    /// A Windows Pod (the agent is a Linux binary).
    Windows,
    /// Already carries our status annotation.
    AlreadyInjected,
    /// Uses one of our volume or init-container names for something else.
    NameConflict,
    /// No targeted container can take the hook.
    NoEligibleContainer,
    /// Not shaped like a Pod.
    InvalidPod,
}

impl SkipReason {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::NotCreate => "not_create",
            SkipReason::SystemNamespace => "system_namespace",
            SkipReason::OwnNamespace => "own_namespace",
            SkipReason::OptedOut => "opted_out",
            SkipReason::MirrorPod => "mirror_pod",
            SkipReason::Windows => "windows",
            SkipReason::AlreadyInjected => "already_injected",
            SkipReason::NameConflict => "name_conflict",
            SkipReason::NoEligibleContainer => "no_eligible_container",
            SkipReason::InvalidPod => "invalid_pod",
        }
    }

    /// Every reason, for pre-registering metrics.
    pub const ALL: [SkipReason; 10] = [
        SkipReason::NotCreate,
        SkipReason::SystemNamespace,
        SkipReason::OwnNamespace,
        SkipReason::OptedOut,
        SkipReason::MirrorPod,
        SkipReason::Windows,
        SkipReason::AlreadyInjected,
        SkipReason::NameConflict,
        SkipReason::NoEligibleContainer,
        SkipReason::InvalidPod,
    ];
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What happened to the Pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// These containers were changed.
    Injected {
        /// Names, in Pod order (init containers first).
        containers: Vec<String>,
    },
    /// Left alone, with no patch.
    Skipped(SkipReason),
    /// The patch could not be built (a bug); left alone, with a warning.
    Failed,
}

/// The engine's answer.
#[derive(Debug, Clone)]
pub struct Mutation {
    /// Empty unless injected. Known to apply to the input: every operation was applied as it
    /// was built.
    pub patch: json_patch::Patch,
    /// Sentences for the user (admission `warnings`, `inject`'s stderr).
    pub warnings: Vec<String>,
    /// Injected or why not.
    pub outcome: Outcome,
}

impl Mutation {
    fn skipped(reason: SkipReason, warnings: Vec<String>) -> Self {
        Self {
            patch: json_patch::Patch(Vec::new()),
            warnings,
            outcome: Outcome::Skipped(reason),
        }
    }
}

/// A warning for the user (admission `warnings`, `inject`'s stderr). Every one opens with
/// `k8s-deputy: `, so that a reader of `kubectl` output knows which webhook speaks.
pub fn warning(text: fmt::Arguments<'_>) -> String {
    format!("k8s-deputy: {text}")
}

/// A patch that could not be built (a bug): the caller fails open.
#[derive(Debug, Clone, thiserror::Error)]
#[error("internal error: the patch does not apply ({0})")]
pub struct PatchBug(pub String);

/// Mutates a Pod (or a pod template: anything shaped `{metadata, spec}`).
pub fn mutate_pod(pod: &Value, ctx: &PodContext<'_>, config: &InjectionConfig) -> Mutation {
    match plan_pod(pod, ctx, config) {
        Plan::Inject(planned) => {
            build(PatchBuilder::new(pod), planned, config).unwrap_or_else(bug_mutation)
        }
        Plan::Skip { reason, warnings } => Mutation::skipped(reason, warnings),
    }
}

/// [`mutate_pod`] on a document the caller owns, which is consumed (no copy of a large Pod).
pub fn mutate_pod_owned(pod: Value, ctx: &PodContext<'_>, config: &InjectionConfig) -> Mutation {
    match plan_pod(&pod, ctx, config) {
        Plan::Inject(planned) => {
            build(PatchBuilder::from_owned(pod), planned, config).unwrap_or_else(bug_mutation)
        }
        Plan::Skip { reason, warnings } => Mutation::skipped(reason, warnings),
    }
}

fn bug_mutation(bug: PatchBug) -> Mutation {
    Mutation {
        patch: json_patch::Patch(Vec::new()),
        warnings: vec![warning(format_args!("{bug}; admitted unchanged"))],
        outcome: Outcome::Failed,
    }
}

/// What [`plan_pod`] decided.
enum Plan {
    /// Leave the Pod alone.
    Skip {
        /// Why.
        reason: SkipReason,
        /// What the user is told.
        warnings: Vec<String>,
    },
    /// Inject it.
    Inject(Planned),
}

/// What an injected Pod gets.
struct Planned {
    plans: Vec<ContainerPlan>,
    warnings: Vec<String>,
    install: Value,
}

/// Decides everything from the input alone: skip, or what each container gets.
fn plan_pod(pod: &Value, ctx: &PodContext<'_>, config: &InjectionConfig) -> Plan {
    if let Some((reason, warning)) = skip::check(pod, ctx, config) {
        return Plan::Skip {
            reason,
            warnings: warning.into_iter().collect(),
        };
    }
    let mut warnings = Vec::new();
    let plans = containers::plan(pod, config, &mut warnings);
    if plans.is_empty() {
        warnings.push(warning(format_args!(
            "no container can take the preStop relay; Pod left unchanged"
        )));
        return Plan::Skip {
            reason: SkipReason::NoEligibleContainer,
            warnings,
        };
    }
    Plan::Inject(Planned {
        plans,
        warnings,
        install: install_container(pod, config),
    })
}

/// Carries the plan out as patch operations on the evolving document.
fn build(
    mut b: PatchBuilder,
    planned: Planned,
    config: &InjectionConfig,
) -> Result<Mutation, PatchBug> {
    let Planned {
        plans,
        warnings,
        install,
    } = planned;
    add_volumes(&mut b, config);
    b.insert_first(&["spec", "initContainers"], install);
    let mut changed = Vec::new();
    for plan in &plans {
        containers::apply(&mut b, plan, config);
        changed.push(plan.target.name.clone());
    }
    b.ensure_object(&["metadata"]);
    b.ensure_object(&["metadata", "annotations"]);
    b.add(
        &["metadata", "annotations", keys::STATUS],
        Value::String(format!("{STATUS_INJECTED}:{}", changed.join(","))),
    );
    Ok(Mutation {
        patch: b.into_patch().map_err(PatchBug)?,
        warnings,
        outcome: Outcome::Injected {
            containers: changed,
        },
    })
}

fn add_volumes(b: &mut PatchBuilder, config: &InjectionConfig) {
    b.push(
        &["spec", "volumes"],
        json!({"name": AGENT_VOLUME, "emptyDir": {"sizeLimit": config.agent_volume_size}}),
    );
    b.push(
        &["spec", "volumes"],
        json!({"name": IPC_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": config.ipc_volume_size}}),
    );
}

/// The init container: restricted-PSS compliant, no hard-coded UID unless the Pod runs as root.
fn install_container(pod: &Value, config: &InjectionConfig) -> Value {
    let mut security = json!({
        "runAsNonRoot": true,
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
        "readOnlyRootFilesystem": true,
    });
    if get(pod, &["spec", "securityContext", "runAsUser"]).and_then(Value::as_i64) == Some(0) {
        security["runAsUser"] = json!(config.init_non_root_uid);
    }
    let mut limits = json!({"memory": config.init_memory_limit});
    if let Some(cpu) = &config.init_cpu_limit {
        limits["cpu"] = json!(cpu);
    }
    let mut container = json!({
        "name": INSTALL_CONTAINER,
        "image": config.agent_image,
        "command": ["/deputy-agent", "install", config.agent_dir],
        "volumeMounts": [{"name": AGENT_VOLUME, "mountPath": config.agent_dir}],
        "resources": {
            "requests": {"cpu": config.init_cpu_request, "memory": config.init_memory_request},
            "limits": limits,
        },
        "securityContext": security,
    });
    if let Some(policy) = &config.agent_image_pull_policy {
        container["imagePullPolicy"] = json!(policy);
    }
    container
}
