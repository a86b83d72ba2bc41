//! AdmissionReview handling on captured-shape request JSON: the response echoes the uid, carries a
//! base64 JSON Patch that applies, fails open, and refuses only bodies that are not reviews.

use base64::Engine;
use deputy_webhook::admission::{review, BadReview, ReviewResult};
use deputy_webhook::config::InjectionConfig;
use deputy_webhook::mutate::SkipReason;
use serde_json::{json, Value};

fn config() -> InjectionConfig {
    InjectionConfig {
        agent_image: "registry.example/deputy-agent:test".into(),
        ..InjectionConfig::default()
    }
}

/// The shape the API server sends (fields as in a real v1 review of a Deployment's Pod).
fn request(namespace: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:serviceaccounts"]},
            "object": object,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
        }
    })
}

fn web_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "web-7d4b9-", "namespace": "apps", "labels": {"app": "web"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-7d4b9", "uid": "1", "controller": true}]},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}],
                 "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst"}
    })
}

#[test]
fn an_opted_in_pod_gets_a_base64_json_patch_that_applies() {
    let body = serde_json::to_vec(&request("apps", web_pod())).unwrap();
    let (answer, outcome) = review(&body, &config()).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod = web_pod();
    json_patch::patch(&mut pod, &patch).unwrap();
    assert_eq!(
        pod["metadata"]["annotations"]["k8s-deputy.io/status"],
        "injected:web"
    );
    assert_eq!(outcome.result, ReviewResult::Injected);
    assert_eq!(
        (outcome.namespace.as_str(), outcome.name.as_str()),
        ("apps", "web-7d4b9-*")
    );
    assert!(response.get("warnings").is_none());
}

#[test]
fn a_skipped_pod_is_allowed_without_a_patch_and_explained() {
    let body = serde_json::to_vec(&request("kube-system", web_pod())).unwrap();
    let (answer, outcome) = review(&body, &config()).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    assert_eq!(
        outcome.result,
        ReviewResult::Skipped(SkipReason::SystemNamespace)
    );
    assert_eq!(answer["response"]["warnings"].as_array().unwrap().len(), 1);
}

#[test]
fn a_non_pod_request_is_allowed_unchanged_with_a_warning() {
    let mut req = request("apps", json!({"kind": "ConfigMap"}));
    req["request"]["kind"]["kind"] = json!("ConfigMap");
    req["request"]["resource"]["resource"] = json!("configmaps");
    let (answer, outcome) = review(&serde_json::to_vec(&req).unwrap(), &config()).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert!(answer["response"].get("patch").is_none());
    assert_eq!(outcome.result, ReviewResult::FailedOpen);
}

#[test]
fn dry_run_requests_are_mutated_the_same_way() {
    let mut req = request("apps", web_pod());
    req["request"]["dryRun"] = json!(true);
    let (answer, outcome) = review(&serde_json::to_vec(&req).unwrap(), &config()).unwrap();
    assert!(outcome.dry_run);
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
}

#[test]
fn bodies_that_are_not_reviews_are_refused_with_a_reason() {
    let cfg = config();
    assert!(matches!(
        review(b"<html>", &cfg),
        Err(BadReview::NotJson(_))
    ));
    assert_eq!(
        review(b"[1,2]", &cfg).unwrap_err(),
        BadReview::MissingRequest
    );
    assert_eq!(
        review(b"{\"apiVersion\":\"admission.k8s.io/v1\"}", &cfg).unwrap_err(),
        BadReview::MissingRequest
    );
    let mut no_uid = request("apps", web_pod());
    no_uid["request"].as_object_mut().unwrap().remove("uid");
    assert_eq!(
        review(&serde_json::to_vec(&no_uid).unwrap(), &cfg).unwrap_err(),
        BadReview::MissingUid
    );
    let mut v1beta1 = request("apps", web_pod());
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    assert!(matches!(
        review(&serde_json::to_vec(&v1beta1).unwrap(), &cfg),
        Err(BadReview::WrongVersion(_))
    ));
}
