//! Golden tests of the mutation engine: each `fixtures/golden/<case>.input.json` (a Pod and its
//! namespace) must produce exactly `<case>.expected.json` (the Pod after the patch, the outcome
//! and the warnings), and a second pass over the result must produce an empty patch.
//! `UPDATE_GOLDEN=1 cargo test --test golden` rewrites the expected files (review the diff).

use std::path::{Path, PathBuf};

use deputy_webhook::config::InjectionConfig;
use deputy_webhook::mutate::{mutate_pod, Outcome, PodContext, SkipReason};
use serde_json::{json, Value};

/// The settings every golden case was recorded with.
pub fn test_config() -> InjectionConfig {
    InjectionConfig {
        agent_image: "registry.example/deputy-agent:test".into(),
        own_namespace: Some("deputy-system".into()),
        ..InjectionConfig::default()
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden")
}

fn run_case(input: &Path) -> Value {
    let case: Value = serde_json::from_str(&std::fs::read_to_string(input).unwrap()).unwrap();
    let namespace = case["namespace"].as_str();
    let pod = &case["pod"];
    let config = test_config();
    let ctx = PodContext {
        namespace,
        operation: "CREATE",
    };
    let mutation = mutate_pod(pod, &ctx, &config);
    let mut mutated = pod.clone();
    json_patch::patch(&mut mutated, &mutation.patch).expect("the patch applies");
    let outcome = match &mutation.outcome {
        Outcome::Injected { containers } => json!({"injected": containers}),
        Outcome::Skipped(reason) => {
            assert!(mutation.patch.0.is_empty(), "a skipped Pod gets no patch");
            json!({"skipped": reason.as_str()})
        }
        Outcome::Failed => panic!("internal error: {:?}", mutation.warnings),
    };
    // Idempotent: the result of one pass is left alone by the next.
    let again = mutate_pod(&mutated, &ctx, &config);
    assert!(
        again.patch.0.is_empty(),
        "second pass must be empty: {:?}",
        again.patch
    );
    if matches!(mutation.outcome, Outcome::Injected { .. }) {
        assert_eq!(again.outcome, Outcome::Skipped(SkipReason::AlreadyInjected));
    }
    json!({"outcome": outcome, "warnings": mutation.warnings, "pod": mutated})
}

#[test]
fn every_golden_case_matches_and_is_idempotent() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut inputs: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".input.json"))
        .collect();
    inputs.sort();
    assert!(inputs.len() >= 20, "fixtures missing");
    let mut failures = Vec::new();
    for input in inputs {
        let expected_path = PathBuf::from(
            input
                .to_string_lossy()
                .replace(".input.json", ".expected.json"),
        );
        let actual = run_case(&input);
        if update {
            std::fs::write(
                &expected_path,
                serde_json::to_string_pretty(&actual).unwrap() + "\n",
            )
            .unwrap();
            continue;
        }
        let expected: Value = match std::fs::read_to_string(&expected_path) {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(_) => {
                failures.push(format!("{}: no expected file", expected_path.display()));
                continue;
            }
        };
        if actual != expected {
            failures.push(format!(
                "{}:\n{}",
                input.display(),
                serde_json::to_string_pretty(&actual).unwrap()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches:\n{}",
        failures.join("\n\n")
    );
}
