//! Stable-toolchain smoke of the fuzz target (webhook/fuzz, nightly): arbitrary bytes and
//! mutated AdmissionReviews through `admission::review` never panic; accepted bodies are answered
//! allowed with their uid, and returned patches apply to the request's object.

use base64::Engine;
use deputy_webhook::admission::review;
use deputy_webhook::config::InjectionConfig;
use proptest::prelude::*;
use serde_json::{json, Value};

fn config() -> InjectionConfig {
    InjectionConfig {
        agent_image: "registry.example/deputy-agent:fuzz".into(),
        ..InjectionConfig::default()
    }
}

fn check(body: &[u8]) -> Result<(), TestCaseError> {
    if let Ok((answer, outcome)) = review(body, &config()) {
        let response = &answer["response"];
        prop_assert_eq!(&response["allowed"], &json!(true));
        prop_assert_eq!(response["uid"].as_str(), Some(outcome.uid.as_str()));
        if let Some(patch) = response["patch"].as_str() {
            let patch = base64::engine::general_purpose::STANDARD
                .decode(patch)
                .unwrap();
            let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
            let request: Value = serde_json::from_slice(body).unwrap();
            let mut object = request["request"]["object"].clone();
            prop_assert!(json_patch::patch(&mut object, &patch).is_ok());
        }
    }
    Ok(())
}

/// JSON values of any shape, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9/~._-]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::hash_map(
                prop_oneof![
                    Just("name".to_owned()),
                    Just("containers".to_owned()),
                    Just("initContainers".to_owned()),
                    Just("volumes".to_owned()),
                    Just("lifecycle".to_owned()),
                    Just("env".to_owned()),
                    Just("annotations".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        check(&body)?;
    }

    #[test]
    fn reviews_with_odd_objects_never_panic(spec in any_json(), metadata in any_json(), ns in "[a-z-]{0,12}") {
        let body = serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u-1", "kind": {"kind": "Pod"}, "resource": {"resource": "pods"},
                        "namespace": ns, "operation": "CREATE",
                        "object": {"metadata": metadata, "spec": spec}}
        })).unwrap();
        check(&body)?;
    }
}
