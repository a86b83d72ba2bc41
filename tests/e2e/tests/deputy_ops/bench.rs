//! The admission benchmark: 120 server-side dry-run Pods one after the other, the webhook's own
//! latency histogram, the API server's for the same calls, and the client's round trip. It
//! asserts only that every Pod was mutated.

use std::time::{Duration, Instant};

use deputy_e2e::deputy::{injected_namespace, webhook_pod_names, METRICS_PORT, SYSTEM_NS};
use deputy_e2e::figures;
use deputy_e2e::injection::is_injected;
use deputy_e2e::metrics::{self, Histogram};
use deputy_e2e::pods::{demo_pod, dry_run, DemoPod};
use deputy_e2e::{node, Node};
use serde_json::json;

use crate::WEBHOOK;

/// The webhook's own latency histogram, summed over its Pods.
async fn webhook_histogram(node: &Node, pods: &[String]) -> Histogram {
    let mut total = Histogram::default();
    for p in pods {
        let samples = metrics::pod(node, SYSTEM_NS, p, METRICS_PORT)
            .await
            .expect("the webhook's metrics");
        total.add(&Histogram::from_samples(
            &samples,
            "deputy_admission_duration_seconds",
            &[],
        ));
    }
    total
}

/// A histogram bucket's bound for a figure's values: seconds, or `"+Inf"` (JSON has no
/// infinity).
fn le(bound: f64) -> serde_json::Value {
    if bound.is_finite() {
        json!(bound)
    } else {
        json!("+Inf")
    }
}

fn ms(seconds: f64) -> String {
    if seconds.is_infinite() {
        "+Inf".into()
    } else {
        format!("{:.3} ms", seconds * 1e3)
    }
}

/// The benchmark (prints, asserts only that every Pod was mutated): 120 server-side dry-run Pods,
/// one after the other; the webhook's own latency histogram (sub-millisecond buckets), the API
/// server's admission-webhook histogram for the same calls (its smallest bucket is 5 ms), and
/// the client's round trip.
#[tokio::test]
async fn benchmark_admission_latency_over_120_pods() {
    let node = node!("benchmark_admission_latency_over_120_pods");
    let _webhook = WEBHOOK.write().await;
    let ns = injected_namespace(&node, "ops-bench", &[]).await;
    let pods = ns.pods();
    let replicas = webhook_pod_names(&node).await;
    // Warm both replicas' connections first.
    for i in 0..10 {
        let spec = demo_pod(DemoPod::new(&format!("warm-{i}"), &["/app/deputy-app"]));
        pods.create(&dry_run(), &spec).await.expect("warm-up");
    }
    let webhook_before = webhook_histogram(&node, &replicas).await;
    let api_before = deputy_e2e::deputy::admission_histogram(&node).await;
    const N: usize = 120;
    let mut round_trips = Vec::with_capacity(N);
    for i in 0..N {
        let spec = demo_pod(DemoPod::new(&format!("bench-{i}"), &["/app/deputy-app"]));
        let started = Instant::now();
        let created = pods
            .create(&dry_run(), &spec)
            .await
            .expect("dry-run create");
        round_trips.push(started.elapsed());
        assert!(is_injected(&created), "bench-{i} mutated");
    }
    let webhook = webhook_histogram(&node, &replicas)
        .await
        .since(&webhook_before);
    let api = deputy_e2e::deputy::admission_histogram(&node)
        .await
        .since(&api_before);
    round_trips.sort();
    let pct = |q: f64| round_trips[((q * N as f64).ceil() as usize).clamp(1, N) - 1];

    let mut bounds: Vec<f64> = webhook
        .buckets
        .iter()
        .chain(api.buckets.iter())
        .map(|(le, _)| *le)
        .collect();
    bounds.sort_by(f64::total_cmp);
    bounds.dedup();
    let cell = |h: &Histogram, le: f64| h.at(le).map_or("".to_owned(), |n| format!("{n}"));
    let mean_ms = |h: &Histogram| h.mean().map(|d| d.as_secs_f64() * 1e3);
    let shown = |mean: Option<f64>| mean.map_or("-".into(), |m| format!("{m:.3} ms"));
    let bound_ms = |h: &Histogram, q: f64| h.quantile_bound(q).map_or("-".into(), ms);
    let mut table = vec![
        format!("{N} Pod creations (server-side dry run), one at a time; cumulative counts per bucket"),
        "| le | deputy_admission_duration_seconds (webhook) | apiserver_admission_webhook_admission_duration_seconds |".to_owned(),
        "|---:|---:|---:|".to_owned(),
    ];
    for le in bounds {
        table.push(format!(
            "| {} | {} | {} |",
            ms(le),
            cell(&webhook, le),
            cell(&api, le)
        ));
    }
    table.push(format!(
        "| count / mean | {} / {} | {} / {} |",
        webhook.count,
        shown(mean_ms(&webhook)),
        api.count,
        shown(mean_ms(&api)),
    ));
    table.push(format!(
        "| p50 / p99 bucket bound | {} / {} | {} / {} |",
        bound_ms(&webhook, 0.5),
        bound_ms(&webhook, 0.99),
        bound_ms(&api, 0.5),
        bound_ms(&api, 0.99),
    ));
    let histogram = |h: &Histogram| {
        json!({
            "count": h.count,
            "mean_ms": mean_ms(h),
            "p50_bound_s": h.quantile_bound(0.5).map(le),
            "p99_bound_s": h.quantile_bound(0.99).map(le),
            "buckets": h
                .buckets
                .iter()
                .map(|(b, n)| json!({"le_s": le(*b), "count": n}))
                .collect::<Vec<_>>(),
        })
    };
    figures::record(
        "bench",
        &table.join("\n"),
        json!({"pods": N, "webhook": histogram(&webhook), "api_server": histogram(&api)}),
    );
    let ms_of = |d: Duration| d.as_secs_f64() * 1e3;
    let (p50, p99, max) = (ms_of(pct(0.5)), ms_of(pct(0.99)), ms_of(round_trips[N - 1]));
    figures::record(
        "bench",
        &format!(
            "client round trip of the dry-run create: p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
        ),
        json!({"pods": N, "client_round_trip_ms": {"p50": p50, "p99": p99, "max": max}}),
    );
}
