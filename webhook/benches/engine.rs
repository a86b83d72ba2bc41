//! `make bench-webhook` (engine part): microseconds per Pod for the mutation engine alone, and for
//! the whole AdmissionReview path (parse, mutate, check the patch applies, encode), on a small, a
//! typical (3 containers) and a large Pod. Prints a Markdown table; not a test.

use std::hint::black_box;
use std::time::{Duration, Instant};

use deputy_webhook::admission::review;
use deputy_webhook::config::InjectionConfig;
use deputy_webhook::mutate::{mutate_pod, PodContext};
use serde_json::{json, Value};

fn container(i: usize, env: usize, mounts: usize) -> Value {
    json!({
        "name": format!("c{i}"),
        "image": format!("registry.example/app-{i}:1.2.3"),
        "ports": [{"containerPort": 8080 + i, "name": "http"}],
        "env": (0..env).map(|e| json!({"name": format!("VAR_{e}"), "value": format!("value-{e}")})).collect::<Vec<_>>(),
        "volumeMounts": (0..mounts).map(|m| json!({"name": format!("v{m}"), "mountPath": format!("/mnt/{m}")})).collect::<Vec<_>>(),
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080 + i}},
    })
}

fn pod(containers: usize, env: usize, mounts: usize, annotation_bytes: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "generateName": "web-7d4b9-", "namespace": "apps", "labels": {"app": "web"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(annotation_bytes)},
        },
        "spec": {
            "containers": (0..containers).map(|i| container(i, env, mounts)).collect::<Vec<_>>(),
            "volumes": (0..mounts).map(|m| json!({"name": format!("v{m}"), "emptyDir": {}})).collect::<Vec<_>>(),
            "terminationGracePeriodSeconds": 30,
        }
    })
}

fn review_body(pod: &Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                    "kind": {"group": "", "version": "v1", "kind": "Pod"},
                    "resource": {"group": "", "version": "v1", "resource": "pods"},
                    "namespace": "apps", "operation": "CREATE", "object": pod, "dryRun": false}
    }))
    .unwrap()
}

fn per_call(mut f: impl FnMut()) -> Duration {
    for _ in 0..50 {
        f();
    }
    let mut best = Duration::MAX;
    for _ in 0..5 {
        let n = 400;
        let t0 = Instant::now();
        for _ in 0..n {
            f();
        }
        best = best.min(t0.elapsed() / n);
    }
    best
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let config = InjectionConfig {
        agent_image: "registry.example/deputy-agent:1".into(),
        ..InjectionConfig::default()
    };
    let ctx = PodContext {
        namespace: Some("apps"),
        operation: "CREATE",
    };
    println!("| Pod | request body | engine only | whole review (parse → encode) |");
    println!("|---|---:|---:|---:|");
    for (label, pod) in [
        ("small (1 container)", pod(1, 0, 0, 0)),
        ("typical (3 containers, env, mounts)", pod(3, 8, 3, 2_000)),
        (
            "large (20 containers, 40 env, 10 mounts, 64 KiB annotation)",
            pod(20, 40, 10, 64 * 1024),
        ),
    ] {
        let body = review_body(&pod);
        let engine = per_call(|| {
            black_box(mutate_pod(black_box(&pod), &ctx, &config));
        });
        let whole = per_call(|| {
            black_box(review(black_box(&body), &config).unwrap());
        });
        println!(
            "| {label} | {} KiB | {:.1} µs | {:.1} µs |",
            body.len() / 1024,
            engine.as_secs_f64() * 1e6,
            whole.as_secs_f64() * 1e6
        );
    }
}
