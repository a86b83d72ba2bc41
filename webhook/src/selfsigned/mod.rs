//! `serve --tls-secret`: the serving certificate without cert-manager. Every replica watches one
//! Secret (shipped empty, so that RBAC can name it) through the API server, serves the pair it
//! holds, fills and rotates it on schedule ([`plan`]) and keeps the webhook configuration's
//! `caBundle` equal to the Secret's `ca.crt`.
//!
//! One writer without a Lease: each write is a `replace` carrying the `resourceVersion` read, so
//! when two replicas decide the same step, the API server takes the first and answers `409
//! Conflict` to the second, which then sees the winner's Secret through its watch. The
//! configuration is patched only from a Secret just re-read from the API server (a watch may lag)
//! and with a JSON Patch `test` of the configuration's `resourceVersion`, so that a replica cannot
//! put back a bundle older than the one another replica has just patched in.

pub mod config;
pub mod pki;
pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use base64::Engine as _;
use futures::StreamExt as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt as _};
use kube::{Api, Client};
use rustls_pki_types::CertificateDer;

use crate::readiness::NotReady;
use crate::tls::{self, PairLoader, PairOrigin, Serving};
pub use config::TlsSecretConfig;
use plan::{Observed, Reason, Step};

/// Annotation a user sets (any new value) on the Secret to ask for a new CA, through the same
/// overlapping steps as a scheduled renewal.
pub const ROTATE_ANNOTATION: &str = "k8s-deputy.io/rotate";
/// The last `k8s-deputy.io/rotate` value acted on.
pub const ROTATED_ANNOTATION: &str = "k8s-deputy.io/rotated";

/// The most time between two looks at the Secret and the configuration, events or not.
const RESYNC_SECS: i64 = 60;

/// The time between two looks on the timer while the Secret exists: a third of the rotation
/// overlap (2 s to [`RESYNC_SECS`]). A replica whose watch went quiet then still sees a new
/// serving certificate well before the overlap ends and the old CA leaves the bundle; with a
/// minute, any overlap under a minute relied on live watches.
fn resync_secs(overlap: Duration) -> i64 {
    i64::try_from(overlap.as_secs() / 3)
        .unwrap_or(RESYNC_SECS)
        .clamp(2, RESYNC_SECS)
}
/// Wait after a failed API call.
const RETRY_SECS: i64 = 5;

/// Loads the API client's configuration (in-cluster service account or `$KUBECONFIG`) and starts
/// the controller on its own thread. Without credentials it fails at start, visibly; an API server
/// that cannot be reached yet is retried with backoff (and the server stays unready until a pair
/// is loaded).
pub fn start(config: TlsSecretConfig, serving: Serving) -> anyhow::Result<()> {
    // Its own thread and runtime: the caller may be inside one (actix's), where blocking on
    // another is refused; the connection's outcome comes back over a channel.
    let (connected_tx, connected_rx) = std::sync::mpsc::channel::<anyhow::Result<()>>();
    std::thread::Builder::new()
        .name("tls-secret".into())
        .spawn(move || {
            let connect = || -> anyhow::Result<(tokio::runtime::Runtime, Client)> {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("cannot start the TLS Secret controller's runtime")?;
                let client = runtime.block_on(Client::try_default()).context(
                    "--tls-secret needs the Kubernetes API (in-cluster service account or KUBECONFIG)",
                )?;
                Ok((runtime, client))
            };
            let (runtime, client) = match connect() {
                Ok(connected) => connected,
                Err(err) => {
                    let _ = connected_tx.send(Err(err));
                    return;
                }
            };
            let _ = connected_tx.send(Ok(()));
            let controller = Controller {
                secrets: Api::namespaced(client.clone(), config.namespace()),
                configurations: Api::all(client),
                loader: PairLoader::new(
                    PairOrigin::Secret {
                        namespace: config.namespace().to_owned(),
                        name: config.secret().to_owned(),
                    },
                    serving.clone(),
                ),
                config,
                serving,
                provider: tls::provider(),
                trust_seen: None,
                leaf_seen: None,
                last_complaint: None,
                complained: false,
            };
            runtime.block_on(controller.run());
        })
        .context("cannot start the TLS Secret controller's thread")?;
    connected_rx
        .recv()
        .context("the TLS Secret controller stopped while connecting")?
}

struct Controller {
    secrets: Api<Secret>,
    configurations: Api<MutatingWebhookConfiguration>,
    config: TlsSecretConfig,
    serving: Serving,
    /// Serves the Secret's pair.
    loader: PairLoader,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// Since when the configuration has trusted this CA (the newest), as this replica saw it.
    trust_seen: Option<(CertificateDer<'static>, Instant)>,
    /// Since when the Secret has held this serving certificate, as this replica saw it.
    leaf_seen: Option<(String, Instant)>,
    /// The last failure logged as a warning, so that a repeating one is not.
    last_complaint: Option<String>,
    /// Whether the current look logged a failure.
    complained: bool,
}

/// What one look ended with.
enum Outcome {
    /// The Secret was written: go on from it at once (the watch echoes it later).
    Written(Box<Secret>),
    /// Look again at this time (seconds since the epoch).
    WaitUntil(i64),
}

impl Controller {
    async fn run(mut self) {
        let events =
            watcher::watch_object(self.secrets.clone(), self.config.secret()).default_backoff();
        let mut events = std::pin::pin!(events);
        let resync = resync_secs(self.config.settings().overlap);
        // None until the watch has answered once; then the Secret, or None if it does not exist.
        let mut latest: Option<Option<Secret>> = None;
        let mut wake = tokio::time::Instant::now() + Duration::from_secs(3600);
        // Whether the next look was asked for by a watch event (else by the timer).
        let mut by_event = false;
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(secret)) => {
                        latest = Some(secret);
                        wake = tokio::time::Instant::now();
                        by_event = true;
                    }
                    Some(Err(err)) => tracing::warn!(
                        error = %err,
                        secret = %self.config.secret(),
                        "watching the TLS Secret (retrying with backoff)"
                    ),
                    None => {
                        // Not expected (the watch retries with backoff): without it nothing would
                        // rotate, so exit and let the kubelet restart the container.
                        tracing::error!("the TLS Secret's watch ended; exiting");
                        std::process::exit(1);
                    }
                },
                () = tokio::time::sleep_until(wake) => {
                    if !by_event {
                        // A look on the timer reads the Secret itself: a watch that went quiet
                        // (a lost connection being retried) must not keep this replica stale.
                        self.refresh(&mut latest).await;
                    }
                    by_event = false;
                    let at = match &latest {
                        None => unix_now() + RESYNC_SECS,
                        Some(None) => {
                            tracing::error!(
                                namespace = %self.config.namespace(),
                                secret = %self.config.secret(),
                                "the TLS Secret does not exist: apply the manifests, which ship \
                                 it empty (RBAC cannot let the webhook create it by name)"
                            );
                            unix_now() + RESYNC_SECS
                        }
                        Some(Some(secret)) => match self.look(secret).await {
                            Ok(Outcome::Written(written)) => {
                                latest = Some(Some(*written));
                                unix_now()
                            }
                            Ok(Outcome::WaitUntil(at)) => at,
                            Err(()) => unix_now() + RETRY_SECS,
                        },
                    };
                    let delay = (at - unix_now()).clamp(0, resync);
                    wake = tokio::time::Instant::now() + Duration::from_secs(delay.unsigned_abs());
                }
            }
        }
    }

    /// Replaces `latest` with the Secret as the API server has it now, if it differs.
    async fn refresh(&mut self, latest: &mut Option<Option<Secret>>) {
        let Some(Some(known)) = latest.as_ref() else {
            return;
        };
        match self.secrets.get_opt(self.config.secret()).await {
            Ok(Some(fresh))
                if fresh.metadata.resource_version != known.metadata.resource_version =>
            {
                *latest = Some(Some(fresh));
            }
            Ok(Some(_)) => {}
            Ok(None) => *latest = Some(None),
            Err(err) => self.complain("cannot read the TLS Secret", &err),
        }
    }

    /// [`Self::reconcile`], forgetting the last failure when this look logged none.
    async fn look(&mut self, secret: &Secret) -> Result<Outcome, ()> {
        self.complained = false;
        let outcome = self.reconcile(secret).await;
        if !self.complained {
            self.last_complaint = None;
        }
        outcome
    }

    /// One look: serve what the Secret holds, sync the configuration, take the next step.
    /// `Err`: retry after a pause (already logged).
    async fn reconcile(&mut self, secret: &Secret) -> Result<Outcome, ()> {
        self.serve(secret);
        let observed = observe(secret);
        let name = self.config.webhook_configuration().to_owned();
        let name = name.as_str();
        // Without the configuration (missing, forbidden, API trouble) the Secret is still filled
        // or repaired, so that there is something to serve; every other step waits for it.
        let configuration = match self.configurations.get(name).await {
            Ok(read) => match self.sync_configuration(&read, secret, &observed).await {
                Ok(Some(patched)) => Some(patched),
                Ok(None) => Some(read),
                // Most often another replica patched it first (the `test` of the version read
                // failed): read what it wrote, rather than judge trust on what it replaced.
                Err(()) => Some(self.configurations.get(name).await.unwrap_or(read)),
            },
            Err(err) => {
                self.complain("cannot read the MutatingWebhookConfiguration", &err);
                None
            }
        };
        if let Some(configuration) = &configuration {
            self.check_served_is_trusted(configuration);
        }
        let newest = observed.cas.first().map(|ca| ca.der.clone());
        let trusted = configuration
            .as_ref()
            .is_some_and(|c| trusts(c, newest.as_ref()));
        let seen = self.seen(trusted.then_some(newest).flatten(), &observed);
        let now = unix_now();
        let step = plan::next_step(&observed, seen, now, self.config.settings(), &self.provider)
            .map_err(|err| self.complain("cannot mint a certificate", &err))?;
        let (reason, contents, handles_rotation_request) = match step {
            Step::Wait { until } if configuration.is_none() => {
                return Ok(Outcome::WaitUntil(until.min(now + RETRY_SECS)))
            }
            Step::Wait { until } => return Ok(Outcome::WaitUntil(until)),
            Step::Write {
                reason,
                contents,
                handles_rotation_request,
            } => (reason, contents, handles_rotation_request),
        };
        let nothing_to_serve = matches!(reason, Reason::Initial | Reason::LeafInvalid);
        if configuration.is_none() && !nothing_to_serve {
            return Ok(Outcome::WaitUntil(now + RETRY_SECS));
        }
        let mut new = secret.clone();
        let data = new.data.get_or_insert_with(BTreeMap::new);
        for (key, value) in [
            ("ca.crt", contents.ca_bundle),
            ("ca.key", contents.ca_key),
            ("tls.crt", contents.leaf.cert),
            ("tls.key", contents.leaf.key),
        ] {
            data.insert(key.to_owned(), ByteString(value.into_bytes()));
        }
        let annotations = new.metadata.annotations.get_or_insert_with(BTreeMap::new);
        if handles_rotation_request {
            if let Some(token) = annotations.get(ROTATE_ANNOTATION).cloned() {
                annotations.insert(ROTATED_ANNOTATION.to_owned(), token);
            }
        }
        let secret_name = self.config.secret();
        match self
            .secrets
            .replace(secret_name, &PostParams::default(), &new)
            .await
        {
            Ok(written) => {
                tracing::info!(
                    reason = reason.as_str(),
                    secret = %secret_name,
                    "TLS Secret written"
                );
                self.serving.metrics.tls_secret_written(reason.as_str());
                Ok(Outcome::Written(Box::new(written)))
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(
                    reason = reason.as_str(),
                    "another replica wrote the TLS Secret first"
                );
                Ok(Outcome::WaitUntil(unix_now() + 1))
            }
            Err(err) => {
                self.complain("cannot write the TLS Secret", &err);
                Err(())
            }
        }
    }

    /// Marks the server unready while the configuration does not trust the pair it serves (a
    /// replica that missed the Secret's updates would fail every call the API server sends it).
    fn check_served_is_trusted(&mut self, configuration: &MutatingWebhookConfiguration) {
        let Some(served) = self.serving.resolver.current() else {
            return;
        };
        let Some(leaf) = served.key.cert.first() else {
            return;
        };
        let now = unix_now();
        let name = &self.config.settings().dns_names[0];
        let bundles = bundles(configuration);
        let trusted = !bundles.is_empty()
            && bundles.iter().all(|bundle| {
                pki::verified_der_by(&pki::parse_bundle(bundle), leaf, name, now, &self.provider)
                    .is_some()
            });
        let was_untrusted = self.serving.readiness.set(NotReady::Untrusted, !trusted);
        if trusted == was_untrusted {
            if trusted {
                tracing::info!("the caBundle trusts the serving certificate: ready");
            } else {
                tracing::warn!(
                    "the caBundle does not trust the serving certificate: not ready until it does"
                );
            }
        }
    }

    /// Logs a failure as a warning the first time, and at debug level while it repeats (the
    /// controller retries every few seconds); a look that ends well forgets it.
    fn complain(&mut self, context: &'static str, err: &dyn std::fmt::Display) {
        self.complained = true;
        let complaint = format!("{context}: {err}");
        if self.last_complaint.as_ref() == Some(&complaint) {
            tracing::debug!(error = %err, "{context} (again)");
        } else {
            tracing::warn!(error = %err, "{context}");
            self.last_complaint = Some(complaint);
        }
    }

    /// Updates what this replica has seen and since when, and says it on the wall clock:
    /// `trusted_newest` is the newest CA if every entry of the configuration trusts it.
    fn seen(
        &mut self,
        trusted_newest: Option<CertificateDer<'static>>,
        observed: &Observed,
    ) -> plan::Seen {
        let now = Instant::now();
        self.trust_seen = match (trusted_newest, self.trust_seen.take()) {
            (Some(ca), Some((seen, at))) if seen == ca => Some((seen, at)),
            (Some(ca), _) => Some((ca, now)),
            (None, _) => None,
        };
        let leaf = observed
            .leaf
            .as_ref()
            .map(|l| l.cert.clone())
            .unwrap_or_default();
        self.leaf_seen = match self.leaf_seen.take() {
            Some((seen, at)) if seen == leaf => Some((seen, at)),
            _ => Some((leaf, now)),
        };
        let since =
            |at: Instant| unix_now() - i64::try_from(at.elapsed().as_secs()).unwrap_or(i64::MAX);
        plan::Seen {
            newest_trusted_since: self.trust_seen.as_ref().map(|(_, at)| since(*at)),
            leaf_since: self
                .leaf_seen
                .as_ref()
                .map_or(unix_now(), |(_, at)| since(*at)),
        }
    }

    /// Serves the Secret's `tls.crt`/`tls.key` if they are new and valid; a bad pair is logged
    /// and counted once, and the pair in use is kept.
    fn serve(&mut self, secret: &Secret) {
        let field = |key: &str| {
            secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .map(|v| v.0.clone())
                .unwrap_or_default()
        };
        let source = (field("tls.crt"), field("tls.key"));
        if !source.0.is_empty() {
            self.loader.offer(source);
        }
    }

    /// Patches every entry's `caBundle` to the Secret's `ca.crt` where they differ, if the
    /// Secret is usable and still the latest (re-read: the watch may lag). Returns the patched
    /// configuration.
    async fn sync_configuration(
        &mut self,
        configuration: &MutatingWebhookConfiguration,
        secret: &Secret,
        observed: &Observed,
    ) -> Result<Option<MutatingWebhookConfiguration>, ()> {
        let usable = observed
            .cas
            .first()
            .is_some_and(|ca| ca.not_after > unix_now() && pki::key_matches(ca, &observed.ca_key));
        let bundle = pki::bundle_pem(&observed.cas);
        if !usable || bundles(configuration).iter().all(|b| *b == bundle) {
            return Ok(None);
        }
        let latest = match self.secrets.get(self.config.secret()).await {
            Ok(latest) => latest,
            Err(err) => {
                self.complain("cannot re-read the TLS Secret", &err);
                return Err(());
            }
        };
        if latest.metadata.resource_version != secret.metadata.resource_version {
            // A newer Secret is on its way through the watch; sync from that one.
            return Ok(None);
        }
        let Some(patch) = bundle_patch(configuration, &bundle) else {
            return Ok(None);
        };
        let name = self.config.webhook_configuration();
        match self
            .configurations
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(patched) => {
                tracing::info!(%name, cas = observed.cas.len(), "caBundle updated");
                Ok(Some(patched))
            }
            // The configuration changed since it was read (the `test` failed): most often another
            // replica patched it first, which is how it should go.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 422 => {
                tracing::debug!(%name, "the configuration changed since it was read (another replica?)");
                Err(())
            }
            Err(err) => {
                self.complain("cannot patch the caBundle", &err);
                Err(())
            }
        }
    }
}

/// Reads what the Secret holds; missing or unreadable parts are empty.
fn observe(secret: &Secret) -> Observed {
    let text = |key: &str| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
            .unwrap_or_default()
    };
    let annotation = |key: &str| {
        secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(key))
            .cloned()
    };
    let (cert, key) = (text("tls.crt"), text("tls.key"));
    let requested = annotation(ROTATE_ANNOTATION);
    Observed {
        cas: pki::parse_bundle(&text("ca.crt")),
        ca_key: text("ca.key"),
        leaf: (!cert.is_empty() && !key.is_empty()).then_some(pki::PemPair { cert, key }),
        rotation_requested: requested.is_some() && requested != annotation(ROTATED_ANNOTATION),
    }
}

/// Whether the configuration has entries and every one trusts `ca` (has it in its `caBundle`).
fn trusts(configuration: &MutatingWebhookConfiguration, ca: Option<&CertificateDer<'_>>) -> bool {
    let Some(ca) = ca else { return false };
    let bundles = bundles(configuration);
    !bundles.is_empty()
        && bundles
            .iter()
            .all(|bundle| pki::parse_bundle(bundle).iter().any(|c| c.der == *ca))
}

/// The decoded `caBundle` of every entry (empty for an entry without one).
fn bundles(configuration: &MutatingWebhookConfiguration) -> Vec<String> {
    configuration
        .webhooks
        .iter()
        .flatten()
        .map(|w| {
            w.client_config
                .ca_bundle
                .as_ref()
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .unwrap_or_default()
        })
        .collect()
}

/// A JSON Patch that sets every entry's `caBundle`, applied only if the configuration is still
/// the one read (`test` of its `resourceVersion`). None if it has no entries or no
/// `resourceVersion`.
fn bundle_patch(
    configuration: &MutatingWebhookConfiguration,
    bundle: &str,
) -> Option<json_patch::Patch> {
    let resource_version = configuration.metadata.resource_version.as_ref()?;
    let count = configuration.webhooks.as_ref().map_or(0, Vec::len);
    if count == 0 {
        return None;
    }
    let encoded = base64::engine::general_purpose::STANDARD.encode(bundle);
    let mut ops = vec![serde_json::json!(
        {"op": "test", "path": "/metadata/resourceVersion", "value": resource_version}
    )];
    for i in 0..count {
        ops.push(serde_json::json!(
            {"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}
        ));
    }
    serde_json::from_value(serde_json::Value::Array(ops)).ok()
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_watch_is_caught_up_with_well_within_the_overlap() {
        let secs = |s| resync_secs(Duration::from_secs(s));
        assert_eq!(secs(30), 10, "the default overlap");
        assert_eq!(secs(5), 2, "overlays/local: at most 2 s, not less");
        assert_eq!(secs(0), 2);
        assert_eq!(secs(180), 60);
        assert_eq!(secs(u64::MAX), 60);
        for overlap in [3, 5, 6, 30, 90, 179] {
            assert!(secs(overlap) * 2 <= overlap.max(4) as i64, "{overlap}");
        }
    }

    fn configuration() -> MutatingWebhookConfiguration {
        serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "deputy-webhook",
                "resourceVersion": "42",
            },
            "webhooks": [
                {"name": "one.k8s-deputy.io", "clientConfig": {}, "admissionReviewVersions": ["v1"], "sideEffects": "None"},
                {"name": "two.k8s-deputy.io", "clientConfig": {"caBundle": "b2xk"}, "admissionReviewVersions": ["v1"], "sideEffects": "None"}
            ]
        }))
        .unwrap()
    }

    #[test]
    fn the_bundle_patch_tests_the_version_read_and_sets_every_entry() {
        let config = configuration();
        let patch = bundle_patch(&config, "PEM").expect("a patch");
        let ops = serde_json::to_value(&patch).unwrap();
        assert_eq!(
            ops,
            serde_json::json!([
                {"op": "test", "path": "/metadata/resourceVersion", "value": "42"},
                {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": "UEVN"},
                {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": "UEVN"}
            ])
        );
        // Applied to the configuration as the API server would: both bundles set, nothing else.
        let mut doc = serde_json::to_value(&config).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        let patched: MutatingWebhookConfiguration = serde_json::from_value(doc).unwrap();
        assert_eq!(bundles(&patched), vec!["PEM".to_owned(), "PEM".to_owned()]);
        // A configuration changed since it was read fails the test operation.
        let mut newer = serde_json::to_value(&config).unwrap();
        newer["metadata"]["resourceVersion"] = "43".into();
        assert!(json_patch::patch(&mut newer, &patch).is_err());
    }

    #[test]
    fn trust_needs_entries_and_the_ca_in_every_bundle() {
        let ca = pki::mint_ca(1_800_000_000, Duration::from_secs(3600)).unwrap();
        let der = pki::parse_bundle(&ca.cert)[0].der.clone();
        let with_bundles = |first: &str, second: &str| {
            let mut config = configuration();
            let webhooks = config.webhooks.as_mut().unwrap();
            webhooks[0].client_config.ca_bundle = Some(ByteString(first.as_bytes().to_vec()));
            webhooks[1].client_config.ca_bundle = Some(ByteString(second.as_bytes().to_vec()));
            config
        };
        let other = pki::mint_ca(1_800_000_000, Duration::from_secs(3600))
            .unwrap()
            .cert;
        let both = format!("{other}{}", ca.cert);
        assert!(trusts(&with_bundles(&ca.cert, &both), Some(&der)));
        assert!(
            !trusts(&with_bundles(&ca.cert, &other), Some(&der)),
            "every entry"
        );
        assert!(!trusts(&with_bundles(&ca.cert, &ca.cert), None));
        let mut empty = configuration();
        empty.webhooks = Some(Vec::new());
        assert!(!trusts(&empty, Some(&der)), "no entry trusts nothing");
    }

    #[test]
    fn no_patch_without_entries_or_resource_version() {
        let mut config = configuration();
        config.webhooks = Some(Vec::new());
        assert!(bundle_patch(&config, "PEM").is_none());
        let mut config = configuration();
        config.metadata.resource_version = None;
        assert!(bundle_patch(&config, "PEM").is_none());
    }

    #[test]
    fn a_rotation_request_is_pending_until_marked_handled() {
        let secret = |annotations: serde_json::Value| -> Secret {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "tls", "annotations": annotations},
                "data": {"tls.crt": "", "ca.key": "a2V5"}
            }))
            .unwrap()
        };
        assert!(!observe(&secret(serde_json::json!({}))).rotation_requested);
        let requested = observe(&secret(serde_json::json!({ROTATE_ANNOTATION: "1"})));
        assert!(requested.rotation_requested);
        assert_eq!(requested.ca_key, "key");
        assert!(requested.leaf.is_none(), "an empty tls.crt is no pair");
        let handled = serde_json::json!({ROTATE_ANNOTATION: "1", ROTATED_ANNOTATION: "1"});
        assert!(!observe(&secret(handled)).rotation_requested);
        let again = serde_json::json!({ROTATE_ANNOTATION: "2", ROTATED_ANNOTATION: "1"});
        assert!(observe(&secret(again)).rotation_requested);
    }
}
