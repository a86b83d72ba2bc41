//! `deputy-webhook inject` end to end through `inject::run`: golden files (input manifest →
//! expected manifest and stderr), the output read back against the input, and bad input.
//!
//! Golden files live in `tests/fixtures/inject/`: `NAME.in.{yaml,json}`, `NAME.out.*` and
//! `NAME.stderr`. After a deliberate change, regenerate them with
//! `DEPUTY_BLESS=1 cargo test -p deputy-webhook --test inject` and review the diff.

use std::path::{Path, PathBuf};

use deputy_webhook::config::InjectionConfig;
use deputy_webhook::inject::{self, InjectError};
use deputy_webhook::mutate::Outcome;
use deputy_yaml::{self as yaml, Node};
use serde_json::Value;

const AGENT_IMAGE: &str = "ghcr.io/k8s-deputy/deputy-agent:0.1.0";

fn config() -> InjectionConfig {
    InjectionConfig {
        agent_image: AGENT_IMAGE.into(),
        ..InjectionConfig::default()
    }
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inject")
}

/// Runs `inject` over `NAME.in.EXT` and compares stdout and stderr with the golden files.
/// Returns (input, output).
fn golden(name: &str, ext: &str) -> (String, String) {
    let dir = fixture_dir();
    let input = std::fs::read_to_string(dir.join(format!("{name}.in.{ext}"))).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    inject::run(input.as_bytes(), &mut out, &mut err, &config()).unwrap();
    let (out, err) = (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    );
    let out_path = dir.join(format!("{name}.out.{ext}"));
    let err_path = dir.join(format!("{name}.stderr"));
    if std::env::var_os("DEPUTY_BLESS").is_some() {
        std::fs::write(&out_path, &out).unwrap();
        std::fs::write(&err_path, &err).unwrap();
    }
    let want_out = std::fs::read_to_string(&out_path).unwrap();
    let want_err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(out, want_out, "stdout differs from {}", out_path.display());
    assert_eq!(err, want_err, "stderr differs from {}", err_path.display());
    assert_output_is_input_plus_injection(&input, &out);
    (input, out)
}

/// The output, read back, is the input plus our additions and nothing else: workload documents
/// equal the input once the injected fields are removed; every other document is equal
/// outright, key order included.
fn assert_output_is_input_plus_injection(input: &str, output: &str) {
    let before: Vec<Node> = yaml::parse(input)
        .unwrap()
        .documents
        .into_iter()
        .filter(|d| *d != Node::Null)
        .collect();
    let after = yaml::parse(output).unwrap().documents;
    assert_eq!(before.len(), after.len(), "document count");
    for (b, a) in before.iter().zip(&after) {
        let (bj, mut aj) = (b.to_json(), a.to_json());
        if bj == aj {
            assert_eq!(b, a, "an unchanged document keeps its key order");
            continue;
        }
        strip_injection(&mut aj);
        prune_added_empties(&mut aj, &bj);
        assert_eq!(
            aj, bj,
            "output minus the injected fields differs from the input"
        );
    }
}

/// Removes what the engine adds, wherever a pod template sits (Pod, workload, List item).
fn strip_injection(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::Object(annotations)) = map.get_mut("annotations") {
                annotations.remove("k8s-deputy.io/status");
            }
            for (list, ours) in [
                ("volumes", &["deputy-agent", "deputy-ipc"][..]),
                ("initContainers", &["deputy-install"][..]),
                ("volumeMounts", &["deputy-agent", "deputy-ipc"][..]),
                ("env", &["DEPUTY_IPC_DIR"][..]),
            ] {
                if let Some(Value::Array(items)) = map.get_mut(list) {
                    items.retain(|i| !ours.iter().any(|o| i["name"] == *o));
                }
            }
            if let Some(Value::Object(lifecycle)) = map.get_mut("lifecycle") {
                let ours = lifecycle
                    .get("preStop")
                    .and_then(|p| p.pointer("/exec/command/0"))
                    .is_some_and(|c| c == "/deputy/bin/deputy-agent");
                if ours {
                    lifecycle.remove("preStop");
                }
            }
            map.values_mut().for_each(strip_injection);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_injection),
        _ => {}
    }
}

/// Drops empty maps and lists that the input did not have (created to hold our additions).
fn prune_added_empties(after: &mut Value, before: &Value) {
    let empty = Value::Object(serde_json::Map::new());
    match (after, before) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a.iter_mut() {
                prune_added_empties(v, b.get(k).unwrap_or(&empty));
            }
            a.retain(|k, v| {
                b.contains_key(k)
                    || !(v.as_object().is_some_and(|m| m.is_empty())
                        || v.as_array().is_some_and(Vec::is_empty))
            });
        }
        (Value::Array(a), Value::Array(b)) => {
            for (av, bv) in a.iter_mut().zip(b) {
                prune_added_empties(av, bv);
            }
        }
        _ => {}
    }
}

#[test]
fn deployment_template_is_injected() {
    golden("deployment", "yaml");
}

#[test]
fn cronjob_job_template_is_injected() {
    golden("cronjob", "yaml");
}

#[test]
fn list_items_are_injected_and_other_items_pass_through() {
    let (_, out) = golden("list", "yaml");
    assert!(out.contains("kind: Service"));
}

#[test]
fn yaml_1_1_sensitive_strings_round_trip_quoted_and_other_kinds_pass_through() {
    let (_, out) = golden("yaml11-strings", "yaml");
    for line in [
        "  enabled: 'on'\n",
        "  'no': 'NO'\n",
        "  time: '12:30'\n",
        "  date: '2024-01-01'\n",
        "  mode: '0755'\n",
        "  empty: ''\n",
        "  tilde: '~'\n",
        // Unquoted in the input: typed as YAML 1.1 (and so by kubectl).
        "  enabled: true\n",
        "  mode: 493\n",
        "  'true': true\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
}

#[test]
fn octal_default_mode_is_read_as_kubectl_reads_it() {
    let (_, out) = golden("default-mode", "yaml");
    assert!(out.contains("defaultMode: 256\n"), "{out}");
    assert!(out.contains("mode: 420\n"), "{out}");
}

#[test]
fn skipped_workloads_are_unchanged_with_a_reason_on_stderr() {
    let (input, out) = golden("skipped", "yaml");
    let (b, a) = (yaml::parse(&input).unwrap(), yaml::parse(&out).unwrap());
    assert_eq!(b.documents, a.documents);
}

#[test]
fn json_input_gives_json_output() {
    let (_, out) = golden("pod", "json");
    let value: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        value["metadata"]["annotations"]["k8s-deputy.io/status"],
        "injected:app"
    );
}

#[test]
fn already_injected_pod_is_unchanged_with_a_warning() {
    // The input is the output of a first pass; the second pass must change nothing.
    let dir = fixture_dir();
    let first = std::fs::read_to_string(dir.join("default-mode.out.yaml")).unwrap();
    let in_path = dir.join("already-injected.in.yaml");
    if std::env::var_os("DEPUTY_BLESS").is_some() {
        std::fs::write(&in_path, &first).unwrap();
    }
    let (input, out) = golden("already-injected", "yaml");
    assert_eq!(
        input, first,
        "already-injected.in.yaml is default-mode.out.yaml"
    );
    assert_eq!(out, input, "a second pass writes the same bytes");
}

#[test]
fn every_workload_kind_is_injected() {
    let kinds = [
        ("v1", "Pod", ""),
        ("apps/v1", "Deployment", "/spec/template"),
        ("apps/v1", "StatefulSet", "/spec/template"),
        ("apps/v1", "DaemonSet", "/spec/template"),
        ("apps/v1", "ReplicaSet", "/spec/template"),
        ("batch/v1", "Job", "/spec/template"),
        ("batch/v1", "CronJob", "/spec/jobTemplate/spec/template"),
    ];
    let mut input = String::new();
    for (api_version, kind, pointer) in kinds {
        let mut object =
            serde_json::json!({"spec": {"containers": [{"name": "app", "image": "app"}]}});
        for part in pointer.rsplit('/').filter(|p| !p.is_empty()) {
            object = serde_json::json!({ part: object });
        }
        object["apiVersion"] = api_version.into();
        object["kind"] = kind.into();
        object["metadata"] = serde_json::json!({"name": kind.to_lowercase()});
        input.push_str(&format!("---\n{object}\n"));
    }
    let (out, warnings, summary) = inject::inject_str(&input, &config()).unwrap();
    assert_eq!(summary.injected(), kinds.len(), "{warnings:?}");
    assert_eq!(
        out.matches("k8s-deputy.io/status: injected:app").count(),
        kinds.len()
    );
    for (report, (_, kind, _)) in summary.workloads.iter().zip(kinds) {
        assert_eq!(report.object, format!("{kind}/{}", kind.to_lowercase()));
        assert!(matches!(report.outcome, Outcome::Injected { .. }));
    }
}

#[test]
fn every_document_skipped_is_still_success() {
    let input = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n";
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = inject::run(input.as_bytes(), &mut out, &mut err, &config()).unwrap();
    assert_eq!(summary.injected(), 0);
    assert_eq!(summary.documents, 1);
    assert_eq!(String::from_utf8(out).unwrap(), input);
    assert!(err.is_empty());
}

/// Runs `inject` on bad input: the error message, and nothing written.
fn failure(input: &str) -> String {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let e: InjectError = inject::run(input.as_bytes(), &mut out, &mut err, &config()).unwrap_err();
    assert!(out.is_empty(), "nothing is written half-way");
    assert!(err.is_empty());
    e.to_string()
}

#[test]
fn bad_input_names_the_document_and_writes_nothing() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ok\nspec:\n  containers:\n  - name: a\n    image: a\n";
    assert_eq!(
        failure(&format!("{pod}---\n- just\n- a list\n")),
        "document 2: expected a Kubernetes object (a mapping), found a sequence"
    );
    assert!(failure(&format!("{pod}---\nkind: [unclosed\n")).starts_with("document 2 (line "));
    assert_eq!(
        failure(&format!("{pod}---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  template:\n    spec:\n      containers: nope\n")),
        "document 2 (Deployment/web): spec.template: spec.containers must be a list"
    );
    assert_eq!(
        failure("apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: c\nspec:\n  schedule: '* * * * *'\n"),
        "document 1 (CronJob/c): spec.jobTemplate.spec.template is missing"
    );
    assert_eq!(
        failure(&format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}\n- 42\n",
            "{apiVersion: v1, kind: ConfigMap}"
        )),
        "document 1, items[1]: expected a Kubernetes object (a mapping), found a number"
    );
    assert_eq!(
        failure("{\"kind\": \"Pod\"}\n{\"kind\": "),
        "document 2 (line 2): invalid JSON: EOF while parsing a value at line 2 column 9"
    );
    assert_eq!(
        failure("plain text\n"),
        "document 1: expected a Kubernetes object (a mapping), found a string"
    );
}

#[test]
fn non_utf8_input_is_refused() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let e = inject::run(&b"kind: \xff\n"[..], &mut out, &mut err, &config()).unwrap_err();
    assert_eq!(e.to_string(), "the input is not UTF-8 text");
    assert!(out.is_empty());
}

#[test]
fn typed_list_items_take_their_kind_from_the_list() {
    let input = "apiVersion: apps/v1\nkind: DeploymentList\nitems:\n- metadata:\n    name: web\n  spec:\n    template:\n      spec:\n        containers:\n        - name: app\n          image: app\n";
    let (out, warnings, summary) = inject::inject_str(input, &config()).unwrap();
    assert_eq!(summary.injected(), 1, "{warnings:?}");
    assert_eq!(warnings, ["Deployment/web: injected (app)"]);
    assert!(
        !out.contains("kind: Deployment\n"),
        "the item's kind is not written"
    );
}

mod arbitrary_input {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any text either injects or gives an error; nothing panics, and output (when there is
        /// some) reads back.
        #[test]
        fn arbitrary_text_never_panics(text in "([a-z]{1,3}|[:\\-\\[\\]{},&*!|>'\"#?%@` \\n\\t~.0-9]|kind: Pod\\n|spec:\\n  containers:\\n  - name: a\\n|apiVersion: v1\\n|---\\n){0,40}") {
            if let Ok((out, _, _)) = inject::inject_str(&text, &config()) {
                prop_assert!(yaml::parse(&out).is_ok(), "{}", out);
            }
        }
    }
}
