//! Scenario 9: a rolling update of an injected Deployment: the old Pods terminate through the
//! relay, the new ones are injected.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use deputy_e2e::deputy::injected_namespace;
use deputy_e2e::figures;
use deputy_e2e::injection::{
    annotation, container, init_names, is_injected, touched_by_deputy, STATUS_ANNOTATION,
};
use deputy_e2e::pods::{demo_pod, DemoPod};
use deputy_e2e::termination::{
    line_index, show, terminated_state, termination_events, LogFollower, RELAY_ASKS, RELAY_CLEAN,
};
use deputy_e2e::{node, poll, MINUTE};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

use crate::WEBHOOK;

/// Scenario 9: a rolling update of an injected Deployment (2 replicas): the old Pods terminate
/// through the relay (callback ran, exit 0, no `FailedPreStopHook`), the new ones are injected.
#[tokio::test]
async fn rolling_update_terminates_old_pods_gracefully_and_injects_the_new_ones() {
    let node = node!("rolling_update_terminates_old_pods_gracefully_and_injects_the_new_ones");
    let _webhook = WEBHOOK.read().await;
    let ns = injected_namespace(&node, "ops-roll", &[]).await;
    let pods = ns.pods();
    let deployments: Api<Deployment> = Api::namespaced(node.client.clone(), &ns.name);
    let mut template = serde_json::to_value(demo_pod(
        DemoPod::new("unused", &["/app/deputy-app"]).args(&["--handler-sleep", "100ms"]),
    ))
    .unwrap();
    template["metadata"] = json!({"labels": {"app": "roll"}});
    template["spec"]["containers"][0]["env"] = json!([{"name": "ROLL", "value": "1"}]);
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "roll"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "roll"}}, "template": template}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("create the Deployment");

    let rolled_out = |value: &'static str| {
        let deployments = deployments.clone();
        let pods = pods.clone();
        async move {
            poll(
                &format!("the Deployment rolled out with ROLL={value}"),
                Duration::from_secs(120),
                || async {
                    let d = deployments.get("roll").await?;
                    let s = d.status.clone().unwrap_or_default();
                    let done = s.observed_generation == d.metadata.generation
                        && s.updated_replicas == Some(2)
                        && s.available_replicas == Some(2)
                        && s.replicas == Some(2);
                    if !done {
                        return Ok(None);
                    }
                    let list = pods.list(&ListParams::default().labels("app=roll")).await?;
                    let current: Vec<Pod> = list
                        .items
                        .into_iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .filter(|p| {
                            container(p, "app")
                                .env
                                .as_deref()
                                .unwrap_or_default()
                                .iter()
                                .any(|e| e.name == "ROLL" && e.value.as_deref() == Some(value))
                        })
                        .collect();
                    Ok((current.len() == 2).then_some(current))
                },
            )
            .await
        }
    };
    let old = rolled_out("1").await.unwrap_or_else(|e| panic!("{e:#}"));
    let old_names: Vec<String> = old.iter().filter_map(|p| p.metadata.name.clone()).collect();
    for p in &old {
        assert!(
            is_injected(p),
            "old Pod injected: {:?}",
            p.metadata.annotations
        );
    }
    for name in &old_names {
        poll(&format!("{name} ready"), MINUTE, || async {
            let logs = pods.logs(name, &Default::default()).await?;
            Ok(logs.contains("deputy-app: ready").then_some(()))
        })
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    }

    // Follow the old Pods' logs and watch them until they are gone, then roll.
    let mut followers = Vec::new();
    for name in &old_names {
        followers.push((
            name.clone(),
            LogFollower::start(&pods, name)
                .await
                .expect("follow the log"),
        ));
    }
    let version = pods
        .list(&ListParams::default().labels("app=roll"))
        .await
        .unwrap()
        .metadata
        .resource_version
        .expect("a list has a resourceVersion");
    let mut events = pods
        .watch(
            &WatchParams::default().labels("app=roll").timeout(180),
            &version,
        )
        .await
        .expect("watch the Pods")
        .boxed();
    let watch_names = old_names.clone();
    let rolled_at = Instant::now();
    let watcher = tokio::spawn(async move {
        let mut exits: BTreeMap<String, Option<i32>> = BTreeMap::new();
        let mut gone: BTreeMap<String, Duration> = BTreeMap::new();
        while gone.len() < watch_names.len() {
            let Some(event) = events.try_next().await? else {
                anyhow::bail!("the watch ended; gone so far: {gone:?}");
            };
            let (pod, deleted) = match event {
                WatchEvent::Modified(p) | WatchEvent::Added(p) => (p, false),
                WatchEvent::Deleted(p) => (p, true),
                WatchEvent::Bookmark(_) => continue,
                WatchEvent::Error(e) => anyhow::bail!("watch error {e:?}"),
            };
            let name = pod.metadata.name.clone().unwrap_or_default();
            if !watch_names.contains(&name) {
                continue;
            }
            if let Some(t) = terminated_state(pod, "app") {
                exits.insert(name.clone(), Some(t.exit_code));
            }
            if deleted {
                gone.insert(name, rolled_at.elapsed());
            }
        }
        Ok((exits, gone))
    });
    deployments
        .patch(
            "roll",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "env": [{"name": "ROLL", "value": "2"}]}
            ]}}}})),
        )
        .await
        .expect("change the env var");

    let new = rolled_out("2").await.unwrap_or_else(|e| panic!("{e:#}"));
    let (exits, gone) = tokio::time::timeout(Duration::from_secs(120), watcher)
        .await
        .expect("the old Pods are gone within 120 s")
        .expect("the watcher")
        .unwrap_or_else(|e| panic!("{e:#}"));
    for p in &new {
        let name = p.metadata.name.as_deref().unwrap_or_default();
        assert!(!old_names.iter().any(|o| o == name));
        assert_eq!(
            annotation(p, STATUS_ANNOTATION),
            Some("injected:app"),
            "new Pod {name} injected"
        );
        assert_eq!(
            init_names(p).first().map(String::as_str),
            Some("deputy-install"),
            "{name}"
        );
        assert!(touched_by_deputy(container(p, "app")), "{name}");
    }
    for (name, follower) in followers {
        let lines = follower
            .finish(Duration::from_secs(30))
            .await
            .unwrap_or_else(|e| panic!("the log of {name}: {e:#}"));
        let log = show(&lines);
        let asks =
            line_index(&lines, RELAY_ASKS).unwrap_or_else(|| panic!("{name}: no relay:\n{log}"));
        let ran = line_index(&lines, "deputy-app: shutdown handler ran")
            .unwrap_or_else(|| panic!("{name}: the handler never ran:\n{log}"));
        let done = line_index(&lines, RELAY_CLEAN)
            .unwrap_or_else(|| panic!("{name}: no clean exit:\n{log}"));
        assert!(
            asks < ran && ran < done,
            "{name}: relay, handler, exit 0 in that order:\n{log}"
        );
        assert_eq!(
            exits.get(&name).copied().flatten(),
            Some(0),
            "{name}: exit code; log:\n{log}"
        );
        let events = termination_events(&node, &ns.name, &name)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(
            !events.iter().any(|r| r == "FailedPreStopHook"),
            "{name}: {events:?}"
        );
    }
    let rolled = rolled_at.elapsed().as_secs_f64();
    let gone: BTreeMap<String, f64> = gone
        .into_iter()
        .map(|(p, t)| (p, t.as_secs_f64()))
        .collect();
    let new: Vec<String> = new.iter().filter_map(|p| p.metadata.name.clone()).collect();
    figures::record(
        "rollout",
        &format!(
            "2 injected replicas rolled in {rolled:.1} s; old Pods gone after {} (exit 0, handler ran in the preStop); new Pods {new:?} injected",
            gone.iter().map(|(p, t)| format!("{p} {t:.1} s")).collect::<Vec<_>>().join(", "),
        ),
        json!({"replicas": 2, "rolled_s": rolled, "old_gone_s": gone, "new_pods": new}),
    );
}
