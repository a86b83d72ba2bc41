//! Which containers get what: target selection from the annotations, the per-container plan
//! (mounts, env, hook, wrap), and the operations that carry it out.

use std::time::Duration;

use serde_json::{json, Value};

use super::drain::{self, Drain, PodDrain};
use super::{get, warning, PatchBuilder, IPC_VOLUME};
use crate::config::{keys, InjectionConfig};

/// The environment variable that tells the agent and apps where the IPC directory is.
pub const ENV_IPC_DIR: &str = "DEPUTY_IPC_DIR";
/// `terminationGracePeriodSeconds` when the Pod sets none.
const DEFAULT_GRACE_SECONDS: i64 = 30;
/// The relay's deadline stays this far inside the grace period.
const GRACE_MARGIN_SECONDS: i64 = 2;

/// Where a target container lives and what it may get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An entry of `spec.containers`.
    App,
    /// A native sidecar: an init container with `restartPolicy: Always`.
    Sidecar,
    /// A plain init container: mounts and env, never a lifecycle hook (the API forbids it).
    Init,
}

/// A targeted container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Its name.
    pub name: String,
    /// Its kind.
    pub role: Role,
}

#[derive(Debug, Clone)]
enum Hook {
    None,
    Add(Vec<String>),
    Chain(Vec<String>),
}

/// What one container gets.
#[derive(Debug, Clone)]
pub struct ContainerPlan {
    /// The container.
    pub target: Target,
    ipc_path: String,
    add_ipc_mount: bool,
    set_env: bool,
    hook: Hook,
    wrap: Option<Vec<Value>>,
}

/// Plans every targeted container that can be injected; explains each one left alone.
pub fn plan(
    pod: &Value,
    config: &InjectionConfig,
    warnings: &mut Vec<String>,
) -> Vec<ContainerPlan> {
    let annotation =
        |key: &str| get(pod, &["metadata", "annotations", key]).and_then(Value::as_str);
    let ipc_default = ipc_dir(annotation(keys::IPC_DIR), config, warnings);
    let timeout = terminate_timeout(pod, annotation(keys::TERMINATE_TIMEOUT), warnings);
    let chain = match annotation(keys::EXISTING_PRESTOP) {
        None => false,
        Some("chain") => true,
        Some(other) => {
            warnings.push(warning(format_args!(
                "{}: {other:?} is not a known value (only \"chain\"); ignored",
                keys::EXISTING_PRESTOP
            )));
            false
        }
    };
    let wrap = match annotation(keys::ENTRYPOINT) {
        None => false,
        Some("wrap") => true,
        Some(other) => {
            warnings.push(warning(format_args!(
                "{}: {other:?} is not a known value (only \"wrap\"); ignored",
                keys::ENTRYPOINT
            )));
            false
        }
    };
    let pod_drain = drain::pod_drain(pod, config, warnings);
    drain::check_probes(pod, pod_drain.drain, warnings);
    let relay = Relay {
        command: vec![
            config.agent_path(),
            "terminate".into(),
            "--timeout".into(),
            timeout.text,
        ],
        timeout: timeout.duration,
        pod_drain,
    };
    let shared = Shared {
        ipc_default: &ipc_default,
        relay: &relay,
        chain,
        wrap,
        config,
    };

    let mut targets = targets(pod, annotation(keys::CONTAINERS), warnings);
    // Pod order (init containers first), whatever order the annotation names them in.
    targets.sort_by_key(|target| pod_position(pod, target));
    targets
        .into_iter()
        .filter_map(|target| {
            let list = list_of(target.role);
            let container = get(pod, &["spec", list])?
                .as_array()?
                .iter()
                .find(|c| c["name"] == target.name.as_str())?;
            plan_container(container, target, &shared, warnings)
        })
        .collect()
}

/// The preStop relay every hook is built from.
struct Relay {
    /// `deputy-agent terminate --timeout T`.
    command: Vec<String>,
    /// T.
    timeout: Duration,
    /// The drain the Pod's annotations or the defaults ask for.
    pod_drain: PodDrain,
}

impl Relay {
    /// The relay with `drain` (shortened to the deadline) before it.
    fn with_drain(
        &self,
        drain: Option<Drain>,
        container: &str,
        warnings: &mut Vec<String>,
    ) -> Vec<String> {
        let mut command = self.command.clone();
        if let Some(drain) =
            drain.and_then(|d| drain::within_deadline(d, self.timeout, container, warnings))
        {
            command.extend(drain.args());
        }
        command
    }
}

/// What every container's plan shares.
struct Shared<'a> {
    ipc_default: &'a str,
    relay: &'a Relay,
    chain: bool,
    wrap: bool,
    config: &'a InjectionConfig,
}

fn plan_container(
    container: &Value,
    target: Target,
    shared: &Shared<'_>,
    warnings: &mut Vec<String>,
) -> Option<ContainerPlan> {
    let Shared {
        ipc_default,
        relay,
        chain,
        wrap,
        config,
    } = *shared;
    let name = &target.name;
    let mounts_at = |path: &str| {
        container["volumeMounts"]
            .as_array()
            .is_some_and(|m| m.iter().any(|m| m["mountPath"] == path))
    };
    if mounts_at(&config.agent_dir) {
        warnings.push(warning(format_args!(
            "container {name:?} already mounts something at {}; left unchanged",
            config.agent_dir
        )));
        return None;
    }
    let hook = if target.role == Role::Init {
        Hook::None
    } else {
        // Sidecars stop after the app containers have exited: traffic has drained by then.
        let pod_drain = match target.role {
            Role::App => relay.pod_drain,
            _ => PodDrain {
                drain: None,
                annotated: false,
            },
        };
        match &container["lifecycle"]["preStop"] {
            Value::Null => Hook::Add(relay.with_drain(pod_drain.drain, name, warnings)),
            existing if chain => match chained(existing, relay, pod_drain, name, warnings) {
                Some(command) => Hook::Chain(command),
                None => {
                    warnings.push(warning(format_args!(
                        "container {name:?} has a preStop hook that is neither exec nor sleep (httpGet is never chained); left unchanged"
                    )));
                    return None;
                }
            },
            _ => {
                warnings.push(warning(format_args!(
                    "container {name:?} already has a preStop hook; left unchanged (annotate {}: chain to run yours first, then the relay)",
                    keys::EXISTING_PRESTOP
                )));
                return None;
            }
        }
    };
    let user_env = container["env"]
        .as_array()
        .and_then(|env| env.iter().find(|e| e["name"] == ENV_IPC_DIR));
    let (ipc_path, set_env) = match user_env {
        None => (ipc_default.to_owned(), true),
        Some(entry) => match entry["value"].as_str() {
            Some(path) if path.starts_with('/') => {
                warnings.push(warning(format_args!(
                    "container {name:?} sets {ENV_IPC_DIR}={path}; the IPC volume is mounted there"
                )));
                (path.trim_end_matches('/').to_owned(), false)
            }
            _ => {
                warnings.push(warning(format_args!(
                    "container {name:?} sets {ENV_IPC_DIR} to something other than an absolute path; kept as is, IPC volume mounted at {ipc_default}"
                )));
                (ipc_default.to_owned(), false)
            }
        },
    };
    if ipc_path == config.agent_dir.trim_end_matches('/') {
        warnings.push(warning(format_args!(
            "container {name:?} would get its IPC directory at {ipc_path}, where the agent is mounted; left unchanged"
        )));
        return None;
    }
    let add_ipc_mount = !mounts_at(&ipc_path);
    if !add_ipc_mount {
        warnings.push(warning(format_args!(
            "container {name:?} already mounts a volume at {ipc_path}; it is used as the IPC directory (it must be writable)"
        )));
    }
    let wrap = if wrap && target.role != Role::Init {
        match container["command"].as_array() {
            Some(command) if command.first().and_then(Value::as_str) == Some(&relay.command[0]) => {
                None
            }
            Some(command) => {
                let mut wrapped = vec![json!(relay.command[0]), json!("run"), json!("--")];
                wrapped.extend(command.iter().cloned());
                Some(wrapped)
            }
            None => {
                warnings.push(warning(format_args!(
                    "container {name:?} sets no command, so it cannot be wrapped (the image's ENTRYPOINT is unknown at admission); set command to wrap it"
                )));
                None
            }
        }
    } else {
        None
    };
    Some(ContainerPlan {
        target,
        ipc_path,
        add_ipc_mount,
        set_env,
        hook,
        wrap,
    })
}

/// The relay preceded by the user's handler: an `exec` command (after the drain), or a `sleep`,
/// which is a fixed drain of its length unless the Pod's annotations chose a drain.
fn chained(
    existing: &Value,
    relay: &Relay,
    pod_drain: PodDrain,
    container: &str,
    warnings: &mut Vec<String>,
) -> Option<Vec<String>> {
    if let Some(user) = existing["exec"]["command"].as_array() {
        let user: Option<Vec<String>> =
            user.iter().map(|v| v.as_str().map(str::to_owned)).collect();
        let user = user?;
        let mut command = relay.with_drain(pod_drain.drain, container, warnings);
        command.push("--".into());
        command.extend(user);
        return Some(command);
    }
    let seconds = existing["sleep"]["seconds"].as_u64()?;
    let drain = if pod_drain.annotated {
        warnings.push(warning(format_args!(
            "container {container:?}: its preStop sleep of {seconds}s is replaced by the drain of {}",
            keys::DRAIN
        )));
        pod_drain.drain
    } else {
        Drain::new(Duration::from_secs(seconds), None)
    };
    Some(relay.with_drain(drain, container, warnings))
}

fn pod_position(pod: &Value, target: &Target) -> (usize, usize) {
    let list = list_of(target.role);
    let index = get(pod, &["spec", list])
        .and_then(Value::as_array)
        .and_then(|items| items.iter().position(|c| c["name"] == target.name.as_str()))
        .unwrap_or(usize::MAX);
    (usize::from(list == "containers"), index)
}

fn list_of(role: Role) -> &'static str {
    match role {
        Role::App => "containers",
        Role::Sidecar | Role::Init => "initContainers",
    }
}

/// The containers to target: every app container, or those the annotation names.
fn targets(pod: &Value, named: Option<&str>, warnings: &mut Vec<String>) -> Vec<Target> {
    let list = |key: &str| {
        get(pod, &["spec", key])
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    };
    let apps = list("containers");
    let inits = list("initContainers");
    let Some(named) = named else {
        return apps
            .iter()
            .filter_map(|c| c["name"].as_str())
            .map(|name| Target {
                name: name.to_owned(),
                role: Role::App,
            })
            .collect();
    };
    let mut chosen: Vec<Target> = Vec::new();
    for name in named.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if chosen.iter().any(|t| t.name == name) {
            warnings.push(warning(format_args!(
                "{} names {name:?} twice",
                keys::CONTAINERS
            )));
            continue;
        }
        let role = if apps.iter().any(|c| c["name"] == name) {
            Role::App
        } else if let Some(init) = inits.iter().find(|c| c["name"] == name) {
            if init["restartPolicy"] == "Always" {
                Role::Sidecar
            } else {
                Role::Init
            }
        } else {
            warnings.push(warning(format_args!(
                "{} names {name:?}, which is not a container of this Pod",
                keys::CONTAINERS
            )));
            continue;
        };
        chosen.push(Target {
            name: name.to_owned(),
            role,
        });
    }
    chosen
}

fn ipc_dir(
    annotated: Option<&str>,
    config: &InjectionConfig,
    warnings: &mut Vec<String>,
) -> String {
    match annotated {
        None => config.ipc_dir.trim_end_matches('/').to_owned(),
        Some(path) if path.starts_with('/') && path.len() > 1 && !path.contains("..") => {
            path.trim_end_matches('/').to_owned()
        }
        Some(path) => {
            warnings.push(warning(format_args!(
                "{}: {path:?} is not an absolute directory; using {}",
                keys::IPC_DIR,
                config.ipc_dir
            )));
            config.ipc_dir.trim_end_matches('/').to_owned()
        }
    }
}

/// The relay's `--timeout`: as written in the annotation, and what it means.
struct Timeout {
    text: String,
    duration: Duration,
}

/// The annotation as written, else the grace period minus a margin (at least 1 s).
fn terminate_timeout(pod: &Value, annotated: Option<&str>, warnings: &mut Vec<String>) -> Timeout {
    if let Some(text) = annotated {
        match humantime::parse_duration(text.trim()) {
            Ok(duration) if duration >= Duration::from_millis(1) => {
                return Timeout {
                    text: text.trim().to_owned(),
                    duration,
                }
            }
            _ => warnings.push(warning(format_args!(
                "{}: {text:?} is not a duration such as 20s; using the grace period",
                keys::TERMINATE_TIMEOUT
            ))),
        }
    }
    let grace = get(pod, &["spec", "terminationGracePeriodSeconds"])
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_GRACE_SECONDS);
    let seconds = (grace - GRACE_MARGIN_SECONDS).max(1) as u64;
    Timeout {
        text: format!("{seconds}s"),
        duration: Duration::from_secs(seconds),
    }
}

/// Adds the planned mounts, env, hook and wrap to one container.
pub fn apply(b: &mut PatchBuilder, plan: &ContainerPlan, config: &InjectionConfig) {
    let list = list_of(plan.target.role);
    let Some(index) = get(b.doc(), &["spec", list])
        .and_then(Value::as_array)
        .and_then(|items| {
            items
                .iter()
                .position(|c| c["name"] == plan.target.name.as_str())
        })
    else {
        return;
    };
    let index = index.to_string();
    let at = |field: &'static str| ["spec", list, index.as_str(), field];
    b.push(
        &at("volumeMounts"),
        json!({"name": super::AGENT_VOLUME, "mountPath": config.agent_dir, "readOnly": true}),
    );
    if plan.add_ipc_mount {
        b.push(
            &at("volumeMounts"),
            json!({"name": IPC_VOLUME, "mountPath": plan.ipc_path, "subPath": plan.target.name}),
        );
    }
    if plan.set_env {
        b.push(
            &at("env"),
            json!({"name": ENV_IPC_DIR, "value": plan.ipc_path}),
        );
    }
    let pre_stop = ["spec", list, index.as_str(), "lifecycle", "preStop"];
    match &plan.hook {
        Hook::None => {}
        Hook::Add(command) => {
            b.ensure_object(&at("lifecycle"));
            b.add(&pre_stop, json!({"exec": {"command": command}}));
        }
        Hook::Chain(command) => b.replace(&pre_stop, json!({"exec": {"command": command}})),
    }
    if let Some(command) = &plan.wrap {
        b.replace(&at("command"), Value::Array(command.clone()));
    }
}
