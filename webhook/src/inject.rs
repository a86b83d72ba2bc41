//! The offline `deputy-webhook inject` command: reads manifests (multi-document YAML or a JSON
//! stream), runs every pod template through the same engine as the webhook ([`crate::mutate`]),
//! and writes the documents back in the input's syntax, like `linkerd inject`.
//!
//! Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs and CronJobs are mutated, also
//! as items of a `List`; every other document passes through with its content unchanged. Being
//! asked is the opt-in, so opt-in labels are not needed, but every other skip rule of the engine
//! holds (system namespaces, the opt-out label, Windows, already injected, ...). Nothing is
//! written unless the whole input was read and processed: output is buffered, so a bad document
//! leaves stdout empty.
//!
//! Every document is written back from its parsed form ([`deputy_yaml`]): key order is kept,
//! comments and flow style are not, anchors and `<<` merges are expanded, empty documents are
//! dropped, and YAML 1.1 plain scalars come out typed as kubectl read them (`defaultMode: 0400`
//! becomes `256`, `enabled: on` becomes `true`) with every ambiguous string quoted — so the
//! output means the same to every reader, even where the input did not.

use std::io::{self, Read, Write};

use serde_json::Value;

use crate::config::InjectionConfig;
use crate::mutate::{self, Outcome, PodContext, SkipReason};
use deputy_yaml::{self as yaml, Format, Node, ParseError};

/// Why `inject` wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    /// The input could not be read.
    #[error("cannot read the input: {0}")]
    Read(#[source] io::Error),
    /// The input is not valid UTF-8.
    #[error("the input is not UTF-8 text")]
    NotText,
    /// The input is not YAML or JSON, or holds values JSON cannot.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// A document (or `List` item) is not a mapping.
    #[error("{at}: expected a Kubernetes object (a mapping), found {found}")]
    NotAnObject {
        /// Where: `document 2` or `document 2, items[0]` (1-based documents).
        at: String,
        /// What was there instead.
        found: &'static str,
    },
    /// A workload whose pod template the engine cannot work on.
    #[error("{at} ({object}): {problem}")]
    InvalidTemplate {
        /// Where: `document 2` or `document 2, items[0]`.
        at: String,
        /// `Kind/name`.
        object: String,
        /// What is wrong with the template.
        problem: String,
    },
    /// The output or warnings could not be written.
    #[error("cannot write the output: {0}")]
    Write(#[source] io::Error),
}

/// What happened to one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadReport {
    /// 1-based index of the document in the input.
    pub document: usize,
    /// `Kind/name` (`Deployment/web`).
    pub object: String,
    /// Injected (and which containers) or why not.
    pub outcome: Outcome,
}

/// What `inject` did, for the caller's summary or exit status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectSummary {
    /// Documents written (empty YAML documents are dropped).
    pub documents: usize,
    /// Every Pod or workload seen, in input order.
    pub workloads: Vec<WorkloadReport>,
}

impl InjectSummary {
    /// How many workloads were injected.
    pub fn injected(&self) -> usize {
        self.workloads
            .iter()
            .filter(|w| matches!(w.outcome, Outcome::Injected { .. }))
            .count()
    }
}

/// Reads manifests from `input`, writes them with every pod template injected to `output`, and
/// one line per workload plus the engine's warnings (each prefixed with `Kind/name: `) to
/// `warnings`. Skipped workloads are not errors. On error nothing is written to `output`.
///
/// `config` must already be validated ([`InjectionConfig::validate`]).
pub fn run(
    mut input: impl Read,
    mut output: impl Write,
    mut warnings: impl Write,
    config: &InjectionConfig,
) -> Result<InjectSummary, InjectError> {
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(InjectError::Read)?;
    let text = String::from_utf8(bytes).map_err(|_| InjectError::NotText)?;
    let (out, messages, summary) = inject_str(&text, config)?;
    output
        .write_all(out.as_bytes())
        .and_then(|()| output.flush())
        .map_err(InjectError::Write)?;
    for line in &messages {
        writeln!(warnings, "{line}").map_err(InjectError::Write)?;
    }
    warnings.flush().map_err(InjectError::Write)?;
    Ok(summary)
}

/// [`run`] on a string: the output text, the warning lines and the summary.
pub fn inject_str(
    text: &str,
    config: &InjectionConfig,
) -> Result<(String, Vec<String>, InjectSummary), InjectError> {
    let stream = yaml::parse(text)?;
    let mut injector = Injector {
        config,
        warnings: Vec::new(),
        summary: InjectSummary::default(),
    };
    let mut documents = Vec::with_capacity(stream.documents.len());
    for (i, document) in stream.documents.into_iter().enumerate() {
        if document == Node::Null {
            continue; // an empty YAML document (`---` twice, or only comments)
        }
        let at = format!("document {}", i + 1);
        documents.push(injector.document(document, i + 1, &at, ("", ""))?);
    }
    injector.summary.documents = documents.len();
    let mut out = String::new();
    match stream.format {
        Format::Yaml => yaml::write_yaml(&documents, &mut out),
        Format::Json => yaml::write_json(&documents, &mut out),
    }
    Ok((out, injector.warnings, injector.summary))
}

/// Where the pod template of a kind sits, as a JSON pointer (`""`: the object is a Pod).
fn template_pointer(api_version: &str, kind: &str) -> Option<&'static str> {
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    match (group, kind) {
        ("", "Pod") => Some(""),
        ("apps" | "extensions", "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet") => {
            Some("/spec/template")
        }
        ("batch", "Job") => Some("/spec/template"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    }
}

struct Injector<'a> {
    config: &'a InjectionConfig,
    warnings: Vec<String>,
    summary: InjectSummary,
}

impl Injector<'_> {
    /// One document or `List` item: the node to write. `implied` is the `(apiVersion, kind)` a
    /// typed list (`PodList`) gives items that leave theirs out; `("", "")` outside one.
    fn document(
        &mut self,
        node: Node,
        index: usize,
        at: &str,
        implied: (&str, &str),
    ) -> Result<Node, InjectError> {
        if !matches!(node, Node::Map(_)) {
            return Err(InjectError::NotAnObject {
                at: at.to_owned(),
                found: node.type_name(),
            });
        }
        let kind = node.get("kind").and_then(Node::as_str);
        let api_version = node.get("apiVersion").and_then(Node::as_str);
        if let Some(item_kind) = kind.and_then(|k| k.strip_suffix("List")) {
            if let Some(Node::Seq(_)) = node.get("items") {
                let implied = (
                    api_version.unwrap_or_default().to_owned(),
                    item_kind.to_owned(),
                );
                return self.list(node, index, at, &implied);
            }
        }
        let (api_version, kind) = match (api_version, kind) {
            (None, None) => implied,
            (api_version, kind) => (api_version.unwrap_or_default(), kind.unwrap_or_default()),
        };
        let Some(pointer) = template_pointer(api_version, kind) else {
            return Ok(node); // passes through untouched
        };
        let object = object_name(&node, kind);
        let mut value = node.to_json();
        let template =
            template_at(&mut value, pointer).map_err(|problem| InjectError::InvalidTemplate {
                at: at.to_owned(),
                object: object.clone(),
                problem,
            })?;
        let namespace = node
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(Node::as_str);
        let ctx = PodContext {
            namespace,
            operation: "CREATE",
        };
        let mutation = mutate::mutate_pod(template, &ctx, self.config);
        for warning in &mutation.warnings {
            self.warnings.push(format!("{object}: {warning}"));
        }
        let outcome = match mutation.outcome {
            Outcome::Skipped(SkipReason::InvalidPod) => {
                return Err(InjectError::InvalidTemplate {
                    at: at.to_owned(),
                    object,
                    problem: "the pod template has no spec.containers list".into(),
                })
            }
            Outcome::Skipped(reason) => {
                self.warnings
                    .push(format!("{object}: not injected ({reason})"));
                Outcome::Skipped(reason)
            }
            Outcome::Failed => {
                self.warnings
                    .push(format!("{object}: not injected (internal error)"));
                Outcome::Failed
            }
            Outcome::Injected { containers } => {
                let mut patched = template.clone();
                if let Err(e) = json_patch::patch(&mut patched, &mutation.patch) {
                    // As the server does: a patch that does not apply leaves the object alone.
                    self.warnings.push(format!(
                        "{object}: not injected: the patch did not apply ({e}); please report this"
                    ));
                    self.report(index, object, Outcome::Skipped(SkipReason::InvalidPod));
                    return Ok(node);
                }
                *template = patched;
                self.warnings
                    .push(format!("{object}: injected ({})", containers.join(", ")));
                Outcome::Injected { containers }
            }
        };
        let injected = matches!(outcome, Outcome::Injected { .. });
        self.report(index, object, outcome);
        if !injected {
            return Ok(node);
        }
        Ok(Node::from_json_ordered(&value, Some(&node)))
    }

    fn list(
        &mut self,
        node: Node,
        index: usize,
        at: &str,
        implied: &(String, String),
    ) -> Result<Node, InjectError> {
        let Node::Map(entries) = node else {
            unreachable!("checked by the caller")
        };
        let mut out = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            let value = match (key.as_str(), value) {
                ("items", Node::Seq(items)) => {
                    let mut injected = Vec::with_capacity(items.len());
                    for (i, item) in items.into_iter().enumerate() {
                        let at = format!("{at}, items[{i}]");
                        injected.push(self.document(item, index, &at, (&implied.0, &implied.1))?);
                    }
                    Node::Seq(injected)
                }
                (_, value) => value,
            };
            out.push((key, value));
        }
        Ok(Node::Map(out))
    }

    fn report(&mut self, document: usize, object: String, outcome: Outcome) {
        self.summary.workloads.push(WorkloadReport {
            document,
            object,
            outcome,
        });
    }
}

/// `Kind/name` for messages (`generateName` when there is no name).
fn object_name(node: &Node, kind: &str) -> String {
    let metadata = node.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name"))
        .and_then(Node::as_str)
        .or_else(|| {
            metadata
                .and_then(|m| m.get("generateName"))
                .and_then(Node::as_str)
        })
        .unwrap_or("<unnamed>");
    format!("{kind}/{name}")
}

/// The pod template at `pointer`, checked to be shaped like one.
fn template_at<'v>(object: &'v mut Value, pointer: &str) -> Result<&'v mut Value, String> {
    let path = if pointer.is_empty() {
        "the object".to_owned()
    } else {
        pointer.trim_start_matches('/').replace('/', ".")
    };
    let template = object
        .pointer_mut(pointer)
        .ok_or_else(|| format!("{path} is missing"))?;
    if !template.is_object() {
        return Err(format!("{path} must be a mapping"));
    }
    if template
        .get("metadata")
        .is_some_and(|m| !m.is_object() && !m.is_null())
    {
        return Err(format!("{path}: metadata must be a mapping"));
    }
    match template.get("spec") {
        Some(spec) if spec.is_object() => {}
        Some(_) => return Err(format!("{path}: spec must be a mapping")),
        None => return Err(format!("{path}: spec is missing")),
    }
    match template.pointer("/spec/containers") {
        Some(Value::Array(containers)) if containers.iter().all(Value::is_object) => {}
        Some(Value::Array(_)) => {
            return Err(format!(
                "{path}: every entry of spec.containers must be a mapping"
            ))
        }
        Some(_) => return Err(format!("{path}: spec.containers must be a list")),
        None => return Err(format!("{path}: spec.containers is missing")),
    }
    Ok(template)
}
