//! Prometheus metrics of the server, every name prefixed `deputy_`: admissions by result and
//! reason, their latency (sub-millisecond buckets), and the serving certificate (reloads, expiry).
//! Rendered in the text exposition format for `GET /metrics`.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets in seconds: the engine answers in microseconds, the API server's deadline is
/// seconds; both ends are covered.
const LATENCY_BUCKETS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
    5.0,
];

/// Labels of `deputy_admission_requests_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct AdmissionLabels {
    /// `injected`, `skipped`, `failed_open`, `bad_request`, `too_large` or `timeout`.
    pub result: &'static str,
    /// The skip reason for `skipped`, else `none`.
    pub reason: &'static str,
}

/// Labels of `deputy_tls_reloads_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ReloadLabels {
    /// `loaded` or `refused`.
    result: &'static str,
}

/// Labels of `deputy_tls_secret_writes_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct SecretWriteLabels {
    /// Why the Secret was written (`initial`, `ca_renewal`, `leaf_from_new_ca`, ...).
    reason: &'static str,
}

/// Labels of `deputy_build_info`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// The metrics; cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<AdmissionLabels, Counter>,
    duration: Histogram,
    warnings: Counter,
    tls_reloads: Family<ReloadLabels, Counter>,
    tls_not_after: Gauge,
    tls_secret_writes: Family<SecretWriteLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("deputy");
        let requests = Family::<AdmissionLabels, Counter>::default();
        registry.register(
            "admission_requests",
            "AdmissionReviews answered, by result and skip reason",
            requests.clone(),
        );
        let duration = Histogram::new(LATENCY_BUCKETS);
        registry.register(
            "admission_duration_seconds",
            "Time from the request head to the answer, body read included",
            duration.clone(),
        );
        let warnings = Counter::default();
        registry.register(
            "admission_warnings",
            "Admission warnings returned to users",
            warnings.clone(),
        );
        let tls_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "tls_reloads",
            "Serving certificate loads (loaded) and refused new pairs (refused)",
            tls_reloads.clone(),
        );
        let tls_not_after = Gauge::default();
        registry.register(
            "tls_certificate_not_after_seconds",
            "Expiry of the serving certificate, seconds since the epoch (0: none loaded)",
            tls_not_after.clone(),
        );
        let tls_secret_writes = Family::<SecretWriteLabels, Counter>::default();
        registry.register(
            "tls_secret_writes",
            "Writes of the --tls-secret Secret by this replica, by reason",
            tls_secret_writes.clone(),
        );
        let build = Family::<BuildLabels, Gauge>::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register("build_info", "The running version", build);
        Self {
            registry,
            requests,
            duration,
            warnings,
            tls_reloads,
            tls_not_after,
            tls_secret_writes,
        }
    }

    /// Counts one answered request.
    pub fn admission(&self, labels: AdmissionLabels, elapsed: Duration, warnings: usize) {
        self.requests.get_or_create(&labels).inc();
        self.duration.observe(elapsed.as_secs_f64());
        self.warnings
            .inc_by(u64::try_from(warnings).unwrap_or(u64::MAX));
    }

    /// A new serving pair was loaded.
    pub fn tls_loaded(&self, not_after: i64) {
        self.tls_reloads
            .get_or_create(&ReloadLabels { result: "loaded" })
            .inc();
        self.tls_not_after.set(not_after);
    }

    /// A new pair was refused.
    pub fn tls_refused(&self) {
        self.tls_reloads
            .get_or_create(&ReloadLabels { result: "refused" })
            .inc();
    }

    /// This replica wrote the `--tls-secret` Secret.
    pub fn tls_secret_written(&self, reason: &'static str) {
        self.tls_secret_writes
            .get_or_create(&SecretWriteLabels { reason })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
