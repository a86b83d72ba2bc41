//! `admission.k8s.io/v1` AdmissionReview in, AdmissionReview out. Parses the raw JSON (typed
//! structs would drop fields they do not know), runs the engine (whose every operation is applied
//! to the request's object as it is built, so the patch is known to apply), and fails open: anything that goes wrong after the request is understood answers `allowed: true`
//! without a patch and with a warning. Only a body that is not a review is an error (HTTP 400).

use base64::Engine;
use serde_json::{json, Value};

use crate::config::InjectionConfig;
use crate::mutate::{self, warning, Outcome, PodContext, SkipReason};

/// How the review ended, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewResult {
    /// The Pod was mutated.
    Injected,
    /// Left alone for this reason.
    Skipped(SkipReason),
    /// An internal error; allowed without a patch.
    FailedOpen,
}

impl ReviewResult {
    /// The metric label of the result (`injected`, `skipped`, `failed_open`).
    pub fn as_str(&self) -> &'static str {
        match self {
            ReviewResult::Injected => "injected",
            ReviewResult::Skipped(_) => "skipped",
            ReviewResult::FailedOpen => "failed_open",
        }
    }
}

/// A summary of one review.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewOutcome {
    /// `request.uid`.
    pub uid: String,
    /// `request.namespace` (empty if absent).
    pub namespace: String,
    /// The Pod's name, or its `generateName` followed by `*`.
    pub name: String,
    /// What happened.
    pub result: ReviewResult,
    /// How many warnings the response carries.
    pub warnings: usize,
    /// `request.dryRun`.
    pub dry_run: bool,
}

/// A body that is not an AdmissionReview: HTTP 400 (any non-200 hands the decision to the
/// webhook's `failurePolicy`).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadReview {
    /// Not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object with a `request`.
    #[error("the body is not an AdmissionReview: no request object")]
    MissingRequest,
    /// No `request.uid` to answer to.
    #[error("the AdmissionReview request has no uid")]
    MissingUid,
    /// Not `admission.k8s.io/v1`.
    #[error("unsupported AdmissionReview apiVersion {0:?}; only admission.k8s.io/v1")]
    WrongVersion(String),
}

/// Answers one AdmissionReview body.
pub fn review(body: &[u8], config: &InjectionConfig) -> Result<(Value, ReviewOutcome), BadReview> {
    let mut review: Value =
        serde_json::from_slice(body).map_err(|e| BadReview::NotJson(e.to_string()))?;
    let api_version = review["apiVersion"].as_str().unwrap_or_default();
    if !review.is_object() || !review["request"].is_object() {
        return Err(BadReview::MissingRequest);
    }
    if api_version != "admission.k8s.io/v1" {
        return Err(BadReview::WrongVersion(api_version.to_owned()));
    }
    let request = &review["request"];
    let uid = request["uid"]
        .as_str()
        .filter(|u| !u.is_empty())
        .ok_or(BadReview::MissingUid)?
        .to_owned();
    let namespace = request["namespace"].as_str().unwrap_or_default().to_owned();
    let object = &request["object"];
    let name = match object["metadata"]["name"].as_str() {
        Some(name) if !name.is_empty() => name.to_owned(),
        _ => format!(
            "{}*",
            object["metadata"]["generateName"]
                .as_str()
                .unwrap_or_default()
        ),
    };
    let mut outcome = ReviewOutcome {
        uid: uid.clone(),
        namespace: namespace.clone(),
        name,
        result: ReviewResult::FailedOpen,
        warnings: 0,
        dry_run: request["dryRun"].as_bool().unwrap_or(false),
    };
    let mut response = json!({"uid": uid, "allowed": true});
    let is_pod = request["kind"]["kind"] == "Pod" || request["resource"]["resource"] == "pods";
    let mut warnings: Vec<String> = Vec::new();
    if !is_pod || !request["object"].is_object() {
        warnings.push(warning(format_args!(
            "the request is not a Pod with an object; admitted unchanged"
        )));
    } else {
        let operation = request["operation"].as_str().unwrap_or_default().to_owned();
        let ctx = PodContext {
            namespace: (!namespace.is_empty()).then_some(namespace.as_str()),
            operation: &operation,
        };
        // The review is ours: hand its object to the engine instead of copying it.
        let object = review["request"]["object"].take();
        let mutation = mutate::mutate_pod_owned(object, &ctx, config);
        warnings.extend(mutation.warnings);
        match mutation.outcome {
            Outcome::Skipped(reason) => outcome.result = ReviewResult::Skipped(reason),
            Outcome::Failed => {}
            Outcome::Injected { .. } => match serde_json::to_vec(&mutation.patch) {
                Ok(patch) => {
                    response["patchType"] = json!("JSONPatch");
                    response["patch"] =
                        json!(base64::engine::general_purpose::STANDARD.encode(patch));
                    outcome.result = ReviewResult::Injected;
                }
                Err(err) => warnings.push(warning(format_args!(
                    "internal error ({err}); admitted unchanged"
                ))),
            },
        }
    }
    outcome.warnings = warnings.len();
    if !warnings.is_empty() {
        response["warnings"] = json!(warnings);
    }
    let answer = json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": response,
    });
    Ok((answer, outcome))
}
