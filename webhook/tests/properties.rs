//! Property tests of the mutation engine over generated Pod-shaped JSON: the patch applies, keeps
//! every user value (containers matched by name, since ours is inserted first; `wrap` and
//! `chain` aside), a second pass is empty, and the result is a valid Pod with unique volume names
//! and unique mount paths per container.

use std::collections::HashSet;

use deputy_webhook::config::InjectionConfig;
use deputy_webhook::mutate::{mutate_pod, Outcome, PodContext};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn config() -> InjectionConfig {
    InjectionConfig {
        agent_image: "registry.example/deputy-agent:test".into(),
        own_namespace: Some("deputy-system".into()),
        ..InjectionConfig::default()
    }
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}",
        Just("deputy-agent".to_owned()),
        Just("deputy-ipc".to_owned()),
        Just("app".to_owned()),
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop_oneof![
        "/[a-z]{1,5}",
        Just("/run".to_owned()),
        Just("/deputy/ipc".to_owned()),
        Just("/deputy/bin".to_owned()),
    ]
}

fn pre_stop() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        4 => Just(None),
        1 => Just(Some(json!({"exec": {"command": ["sh", "-c", "sleep 1"]}}))),
        1 => (1i64..10).prop_map(|s| Some(json!({"sleep": {"seconds": s}}))),
        1 => Just(Some(json!({"httpGet": {"path": "/quit", "port": 8080}}))),
    ]
}

prop_compose! {
    fn container()(
        name in "[a-z]{1,6}",
        env in prop::collection::vec(("[A-Z_]{1,6}", "[a-z0-9/]{0,6}"), 0..3),
        user_ipc in prop::option::weighted(0.15, path()),
        mounts in prop::collection::vec((name(), path()), 0..3),
        pre_stop in pre_stop(),
        command in prop::option::of(prop::collection::vec("[a-z-]{1,5}", 1..3)),
        unknown in prop::option::of(any::<u8>()),
    ) -> Value {
        let mut c = json!({"name": name, "image": "example/app:1"});
        let mut env: Vec<Value> = env.into_iter().map(|(n, v)| json!({"name": n, "value": v})).collect();
        if let Some(p) = user_ipc {
            env.push(json!({"name": "DEPUTY_IPC_DIR", "value": p}));
        }
        if !env.is_empty() { c["env"] = json!(env); }
        let mut seen = HashSet::new();
        let mounts: Vec<Value> = mounts
            .into_iter()
            .filter(|(_, p)| seen.insert(p.clone()))
            .map(|(n, p)| json!({"name": n, "mountPath": p}))
            .collect();
        if !mounts.is_empty() { c["volumeMounts"] = json!(mounts); }
        if let Some(h) = pre_stop { c["lifecycle"] = json!({"preStop": h}); }
        if let Some(cmd) = command { c["command"] = json!(cmd); }
        if let Some(u) = unknown { c["fieldFromTheFuture"] = json!(u); }
        c
    }
}

fn annotations() -> impl Strategy<Value = Map<String, Value>> {
    let entry = prop_oneof![
        Just(("k8s-deputy.io/entrypoint", "wrap")),
        Just(("k8s-deputy.io/existing-prestop", "chain")),
        Just(("k8s-deputy.io/ipc-dir", "/run")),
        Just(("k8s-deputy.io/ipc-dir", "relative")),
        Just(("k8s-deputy.io/terminate-timeout", "20s")),
        Just(("k8s-deputy.io/terminate-timeout", "soon")),
        Just(("k8s-deputy.io/containers", "a,b,zz,a")),
        Just(("team", "x")),
    ];
    prop::collection::vec(entry, 0..4).prop_map(|entries| {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), json!(v)))
            .collect()
    })
}

prop_compose! {
    fn pod()(
        containers in prop::collection::vec(container(), 1..4),
        inits in prop::collection::vec((container(), any::<bool>()), 0..3),
        volumes in prop::collection::vec(name(), 0..3),
        annotations in annotations(),
        root in any::<bool>(),
        grace in prop::option::of(0i64..120),
        namespace in prop_oneof![Just("apps"), Just("kube-system"), Just("deputy-system")],
    ) -> (Value, &'static str) {
        let mut used = HashSet::new();
        let mut unique = |mut c: Value| {
            let base = c["name"].as_str().unwrap().to_owned();
            let mut n = base.clone();
            let mut i = 0;
            while !used.insert(n.clone()) { i += 1; n = format!("{base}{i}"); }
            c["name"] = json!(n);
            c
        };
        let containers: Vec<Value> = containers.into_iter().map(&mut unique).collect();
        let inits: Vec<Value> = inits
            .into_iter()
            .map(|(c, sidecar)| {
                let mut c = unique(c);
                if sidecar { c["restartPolicy"] = json!("Always"); } else {
                    c.as_object_mut().unwrap().remove("lifecycle");
                }
                c
            })
            .collect();
        let mut seen = HashSet::new();
        let volumes: Vec<Value> = volumes
            .into_iter()
            .filter(|v| seen.insert(v.clone()))
            .map(|v| json!({"name": v, "emptyDir": {}}))
            .collect();
        let mut spec = json!({"containers": containers});
        if !inits.is_empty() { spec["initContainers"] = json!(inits); }
        if !volumes.is_empty() { spec["volumes"] = json!(volumes); }
        if root { spec["securityContext"] = json!({"runAsUser": 0}); }
        if let Some(g) = grace { spec["terminationGracePeriodSeconds"] = json!(g); }
        let mut metadata = json!({"generateName": "p-", "namespace": namespace});
        if !annotations.is_empty() { metadata["annotations"] = Value::Object(annotations); }
        (json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}), namespace)
    }
}

/// Whether everything in `user` is still in `out`: objects key by key, lists of named items by
/// name, other lists as a prefix (we only append).
fn keeps(user: &Value, out: &Value, skip_keys: &[&str]) -> Result<(), String> {
    match (user, out) {
        (Value::Object(u), Value::Object(o)) => {
            for (k, v) in u {
                if skip_keys.contains(&k.as_str()) {
                    continue;
                }
                let w = o.get(k).ok_or_else(|| format!("key {k} lost"))?;
                keeps(v, w, skip_keys).map_err(|e| format!("{k}: {e}"))?;
            }
            Ok(())
        }
        (Value::Array(u), Value::Array(o)) => {
            let names: HashSet<_> = u
                .iter()
                .filter_map(|i| i.get("name"))
                .map(Value::to_string)
                .collect();
            let named = names.len() == u.len();
            for (index, item) in u.iter().enumerate() {
                let found = if named {
                    o.iter().find(|x| x.get("name") == item.get("name"))
                } else {
                    o.get(index)
                };
                let found = found.ok_or_else(|| format!("item {index} lost"))?;
                keeps(item, found, skip_keys).map_err(|e| format!("[{index}]: {e}"))?;
            }
            Ok(())
        }
        (a, b) if a == b => Ok(()),
        (a, b) => Err(format!("{a} became {b}")),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn the_patch_applies_keeps_user_values_and_is_idempotent((pod, namespace) in pod()) {
        let ctx = PodContext { namespace: Some(namespace), operation: "CREATE" };
        let mutation = mutate_pod(&pod, &ctx, &config());
        let mut out = pod.clone();
        json_patch::patch(&mut out, &mutation.patch).map_err(|e| TestCaseError::fail(e.to_string()))?;

        let annotation = |k: &str| pod["metadata"]["annotations"][k].as_str();
        let mut skip = Vec::new();
        if annotation("k8s-deputy.io/entrypoint") == Some("wrap") { skip.push("command"); }
        if annotation("k8s-deputy.io/existing-prestop") == Some("chain") { skip.push("preStop"); }
        keeps(&pod, &out, &skip).map_err(TestCaseError::fail)?;

        let again = mutate_pod(&out, &ctx, &config());
        prop_assert!(again.patch.0.is_empty(), "second pass: {:?}", again.patch);

        if let Outcome::Skipped(_) = mutation.outcome {
            prop_assert_eq!(&out, &pod);
        }
        let typed: k8s_openapi::api::core::v1::Pod = serde_json::from_value(out.clone())
            .map_err(|e| TestCaseError::fail(format!("not a Pod: {e}")))?;
        let spec = typed.spec.expect("spec");
        let volumes: Vec<_> = spec.volumes.iter().flatten().map(|v| v.name.clone()).collect();
        prop_assert_eq!(volumes.len(), volumes.iter().collect::<HashSet<_>>().len(), "duplicate volume names {:?}", volumes);
        for c in spec.containers.iter().chain(spec.init_containers.iter().flatten()) {
            let paths: Vec<_> = c.volume_mounts.iter().flatten().map(|m| m.mount_path.clone()).collect();
            prop_assert_eq!(paths.len(), paths.iter().collect::<HashSet<_>>().len(), "duplicate mount paths in {}: {:?}", c.name, paths);
            let envs: Vec<_> = c.env.iter().flatten().filter(|e| e.name == "DEPUTY_IPC_DIR").collect();
            prop_assert!(envs.len() <= 1, "DEPUTY_IPC_DIR set twice in {}", c.name);
        }
    }
}
