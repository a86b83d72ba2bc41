//! The webhook configuration's side of `--tls-secret`: every entry's `caBundle` kept equal to the
//! Secret's `ca.crt` by a JSON Patch that first `test`s the configuration's `resourceVersion`
//! (so that a replica cannot put back a bundle older than the one another has just patched in),
//! and the check that the bundle trusts the certificate this replica serves (else the server is
//! not ready).

use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;

use super::controller::LookError;
use super::pki;
use super::plan::Observed;
use crate::readiness::NotReady;
use crate::tls::Serving;

/// The one MutatingWebhookConfiguration, through the API server.
pub(super) struct ConfigurationStore {
    api: Api<MutatingWebhookConfiguration>,
    name: String,
}

/// How a `caBundle` sync ended, when nothing failed.
pub(super) enum Synced {
    /// Nothing to patch (or a newer Secret is on its way): the configuration read stands.
    Unchanged,
    /// Patched: the configuration as the API server now has it.
    Patched(Box<MutatingWebhookConfiguration>),
    /// The configuration changed since it was read (the `test` failed): most often another
    /// replica patched it first, which is how it should go.
    Raced,
}

impl ConfigurationStore {
    /// The cluster-scoped configuration `name`.
    pub(super) fn new(client: Client, name: &str) -> Self {
        Self {
            api: Api::all(client),
            name: name.to_owned(),
        }
    }

    /// The configuration as the API server has it now.
    pub(super) async fn get(&self) -> Result<MutatingWebhookConfiguration, LookError> {
        self.api
            .get(&self.name)
            .await
            .map_err(LookError::ReadConfiguration)
    }

    /// Sets every entry's `caBundle` to `bundle` (the PEM of `cas` CAs), if `configuration` is
    /// still the version the API server has.
    pub(super) async fn patch_bundle(
        &self,
        configuration: &MutatingWebhookConfiguration,
        bundle: &str,
        cas: usize,
    ) -> Result<Synced, LookError> {
        let Some(patch) = bundle_patch(configuration, bundle) else {
            return Ok(Synced::Unchanged);
        };
        let name = &self.name;
        match self
            .api
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(patched) => {
                tracing::info!(%name, cas, "caBundle updated");
                Ok(Synced::Patched(Box::new(patched)))
            }
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 422 => {
                tracing::debug!(%name, "the configuration changed since it was read (another replica?)");
                Ok(Synced::Raced)
            }
            Err(err) => Err(LookError::PatchBundle(err)),
        }
    }
}

/// The bundle to patch in: the Secret's `ca.crt`, if its newest CA is usable (live, with its key)
/// and some entry's `caBundle` differs from it.
pub(super) fn outdated(
    configuration: &MutatingWebhookConfiguration,
    observed: &Observed,
    now: i64,
) -> Option<String> {
    let usable = observed
        .cas
        .first()
        .is_some_and(|ca| ca.not_after > now && pki::key_matches(ca, &observed.ca_key));
    let bundle = pki::bundle_pem(&observed.cas);
    let differs = bundles(configuration).iter().any(|b| *b != bundle);
    (usable && differs).then_some(bundle)
}

/// Marks the server unready while the configuration does not trust the pair it serves (a
/// replica that missed the Secret's updates would fail every call the API server sends it);
/// `name` is the one the API server dials.
pub(super) fn check_served_is_trusted(
    configuration: &MutatingWebhookConfiguration,
    serving: &Serving,
    name: &str,
    now: i64,
    provider: &Arc<CryptoProvider>,
) {
    let Some(served) = serving.resolver.current() else {
        return;
    };
    let Some(leaf) = served.key.cert.first() else {
        return;
    };
    let bundles = bundles(configuration);
    let trusted = !bundles.is_empty()
        && bundles.iter().all(|bundle| {
            pki::verified_der_by(&pki::parse_bundle(bundle), leaf, name, now, provider).is_some()
        });
    let was_untrusted = serving.readiness.set(NotReady::Untrusted, !trusted);
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

/// Whether the configuration has entries and every one trusts `ca` (has it in its `caBundle`).
pub(super) fn trusts(
    configuration: &MutatingWebhookConfiguration,
    ca: Option<&CertificateDer<'_>>,
) -> bool {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use k8s_openapi::ByteString;

    use super::*;

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
}
