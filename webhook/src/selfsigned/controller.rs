//! The `--tls-secret` loop and one look at the Secret: serve what it holds, sync the `caBundle`,
//! take the schedule's next step ([`super::plan`]), and wait until something falls due, a watch
//! event comes, or the resync timer fires. A failed look is logged once (a repeat at debug level)
//! and retried after a pause; only the watch ending stops the loop.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;

use super::bundle::{self, ConfigurationStore, Synced};
use super::config::TlsSecretConfig;
use super::pki::MintError;
use super::plan::{self, Observed, Reason, Step};
use super::secret::{self, Replaced, SecretStore};
use crate::tls::{self, unix_now, PairLoader, PairOrigin, Serving};

/// The most time between two looks at the Secret and the configuration, events or not.
const RESYNC: Duration = Duration::from_secs(60);
/// The least time between two looks on the timer.
const RESYNC_MIN: Duration = Duration::from_secs(2);
/// Wait after a failed API call.
const RETRY: Duration = Duration::from_secs(5);
/// Wait after another replica wrote the Secret first, for its Secret to come through the watch.
const CONFLICT_WAIT: Duration = Duration::from_secs(1);
/// The timer before the watch has answered once (its first answer wakes the loop).
const FIRST_ANSWER_WAIT: Duration = Duration::from_secs(3600);

/// The time between two looks on the timer while the Secret exists: a third of the rotation
/// overlap (2 s to [`RESYNC`]). A replica whose watch went quiet then still sees a new serving
/// certificate well before the overlap ends and the old CA leaves the bundle; with a minute, any
/// overlap under a minute relied on live watches.
fn resync(overlap: Duration) -> Duration {
    Duration::from_secs(overlap.as_secs() / 3).clamp(RESYNC_MIN, RESYNC)
}

/// Why one look failed; the look is retried after [`RETRY`].
#[derive(Debug, thiserror::Error)]
pub(super) enum LookError {
    /// The Secret could not be read (RBAC, or the API server unreachable).
    #[error("cannot read the TLS Secret")]
    ReadSecret(#[source] kube::Error),
    /// The Secret could not be re-read before patching the `caBundle` from it.
    #[error("cannot re-read the TLS Secret")]
    ReReadSecret(#[source] kube::Error),
    /// The Secret's new content could not be written.
    #[error("cannot write the TLS Secret")]
    WriteSecret(#[source] kube::Error),
    /// The webhook configuration could not be read (missing, forbidden, API trouble).
    #[error("cannot read the MutatingWebhookConfiguration")]
    ReadConfiguration(#[source] kube::Error),
    /// The webhook configuration's `caBundle` could not be patched.
    #[error("cannot patch the caBundle")]
    PatchBundle(#[source] kube::Error),
    /// A new CA or serving certificate could not be made.
    #[error("cannot mint a certificate")]
    Mint(#[source] MintError),
}

impl LookError {
    /// What the API server or the minting said.
    fn detail(&self) -> &dyn std::fmt::Display {
        match self {
            Self::ReadSecret(err)
            | Self::ReReadSecret(err)
            | Self::WriteSecret(err)
            | Self::ReadConfiguration(err)
            | Self::PatchBundle(err) => err,
            Self::Mint(err) => err,
        }
    }
}

/// Why the loop stopped.
#[derive(Debug, thiserror::Error)]
pub(super) enum Stopped {
    /// The Secret's watch ended, which it should not (it retries with backoff): without it
    /// nothing would rotate, so the process exits and the kubelet restarts the container.
    #[error("the TLS Secret's watch ended")]
    WatchEnded,
}

/// What the loop knows of the Secret.
enum Latest {
    /// The watch has not answered yet.
    Unanswered,
    /// The Secret does not exist.
    Missing,
    /// The Secret, as last seen.
    Present(Box<Secret>),
}

/// What asked for the next look.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    /// A watch event: the Secret just came with it.
    Event,
    /// The timer: the Secret is read again first, as the watch may have gone quiet.
    Timer,
}

/// When one look wants the next.
enum Next {
    /// At once, from the Secret just written (the watch echoes it later).
    Now(Box<Secret>),
    /// After this pause (at most the resync period).
    After(Duration),
}

/// Logs a failure as a warning the first time, and at debug level while it repeats (the
/// controller retries every few seconds); a look that ends well forgets it.
#[derive(Default)]
struct Complaints {
    /// The last failure logged as a warning.
    last: Option<String>,
    /// Whether the current look logged a failure.
    in_this_look: bool,
}

impl Complaints {
    fn note(&mut self, err: &LookError) {
        self.in_this_look = true;
        let detail = err.detail();
        let complaint = format!("{err}: {detail}");
        if self.last.as_ref() == Some(&complaint) {
            tracing::debug!(error = %detail, "{err} (again)");
        } else {
            tracing::warn!(error = %detail, "{err}");
            self.last = Some(complaint);
        }
    }

    fn start_look(&mut self) {
        self.in_this_look = false;
    }

    fn end_look(&mut self) {
        if !self.in_this_look {
            self.last = None;
        }
    }
}

/// One replica's controller of the Secret.
pub(super) struct Controller {
    secret: SecretStore,
    configuration: ConfigurationStore,
    config: TlsSecretConfig,
    serving: Serving,
    /// Serves the Secret's pair.
    loader: PairLoader,
    provider: Arc<CryptoProvider>,
    /// Since when the configuration has trusted this CA (the newest), as this replica saw it.
    trust_seen: Option<(CertificateDer<'static>, Instant)>,
    /// Since when the Secret has held this serving certificate, as this replica saw it.
    leaf_seen: Option<(String, Instant)>,
    complaints: Complaints,
}

impl Controller {
    /// A controller of the Secret and configuration `config` names, feeding `serving`.
    pub(super) fn new(client: Client, config: TlsSecretConfig, serving: Serving) -> Self {
        Self {
            secret: SecretStore::new(client.clone(), config.namespace(), config.secret()),
            configuration: ConfigurationStore::new(client, config.webhook_configuration()),
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
            complaints: Complaints::default(),
        }
    }

    /// Watches and reconciles; returns only when it must stop, saying why.
    pub(super) async fn run(mut self) -> Stopped {
        let events = self.secret.watch();
        let mut events = std::pin::pin!(events);
        let resync = resync(self.config.settings().overlap);
        let mut latest = Latest::Unanswered;
        let mut wake = tokio::time::Instant::now() + FIRST_ANSWER_WAIT;
        let mut cause = Cause::Timer;
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(secret)) => {
                        latest = secret.map_or(Latest::Missing, |s| Latest::Present(Box::new(s)));
                        wake = tokio::time::Instant::now();
                        cause = Cause::Event;
                    }
                    Some(Err(err)) => tracing::warn!(
                        error = %err,
                        secret = %self.config.secret(),
                        "watching the TLS Secret (retrying with backoff)"
                    ),
                    None => return Stopped::WatchEnded,
                },
                () = tokio::time::sleep_until(wake) => {
                    if cause == Cause::Timer {
                        // A look on the timer reads the Secret itself: a watch that went quiet
                        // (a lost connection being retried) must not keep this replica stale.
                        self.refresh(&mut latest).await;
                    }
                    cause = Cause::Timer;
                    let delay = match &latest {
                        Latest::Unanswered => RESYNC,
                        Latest::Missing => {
                            tracing::error!(
                                namespace = %self.config.namespace(),
                                secret = %self.config.secret(),
                                "the TLS Secret does not exist: apply the manifests, which ship \
                                 it empty (RBAC cannot let the webhook create it by name)"
                            );
                            RESYNC
                        }
                        Latest::Present(secret) => match self.look(secret).await {
                            Next::Now(written) => {
                                latest = Latest::Present(written);
                                Duration::ZERO
                            }
                            Next::After(delay) => delay,
                        },
                    };
                    wake = tokio::time::Instant::now() + delay.min(resync);
                }
            }
        }
    }

    /// Replaces `latest` with the Secret as the API server has it now, if it differs.
    async fn refresh(&mut self, latest: &mut Latest) {
        let Latest::Present(known) = latest else {
            return;
        };
        match self.secret.get_opt().await {
            Ok(Some(fresh))
                if fresh.metadata.resource_version != known.metadata.resource_version =>
            {
                *latest = Latest::Present(Box::new(fresh));
            }
            Ok(Some(_)) => {}
            Ok(None) => *latest = Latest::Missing,
            Err(err) => self.complaints.note(&err),
        }
    }

    /// [`Self::reconcile`], retried after [`RETRY`] if it fails, forgetting the last failure
    /// when this look logged none.
    async fn look(&mut self, secret: &Secret) -> Next {
        self.complaints.start_look();
        let next = match self.reconcile(secret).await {
            Ok(next) => next,
            Err(err) => {
                self.complaints.note(&err);
                Next::After(RETRY)
            }
        };
        self.complaints.end_look();
        next
    }

    /// One look: serve what the Secret holds, sync the configuration, take the next step.
    async fn reconcile(&mut self, secret: &Secret) -> Result<Next, LookError> {
        let source = secret::serving_pair(secret);
        if !source.0.is_empty() {
            self.loader.offer(source);
        }
        let observed = secret::observe(secret);
        // Without the configuration (missing, forbidden, API trouble) the Secret is still filled
        // or repaired, so that there is something to serve; every other step waits for it.
        let configuration = match self.configuration.get().await {
            Ok(read) => Some(match self.sync_bundle(&read, secret, &observed).await {
                Ok(Synced::Patched(patched)) => *patched,
                Ok(Synced::Unchanged) => read,
                // Most often another replica patched it first (the `test` of the version read
                // failed): read what it wrote, rather than judge trust on what it replaced.
                Ok(Synced::Raced) => self.configuration.get().await.unwrap_or(read),
                Err(err) => {
                    self.complaints.note(&err);
                    self.configuration.get().await.unwrap_or(read)
                }
            }),
            Err(err) => {
                self.complaints.note(&err);
                None
            }
        };
        if let Some(configuration) = &configuration {
            bundle::check_served_is_trusted(
                configuration,
                &self.serving,
                &self.config.settings().dns_names[0],
                unix_now(),
                &self.provider,
            );
        }
        let newest = observed.cas.first().map(|ca| ca.der.clone());
        let trusted = configuration
            .as_ref()
            .is_some_and(|c| bundle::trusts(c, newest.as_ref()));
        let seen = self.seen(trusted.then_some(newest).flatten(), &observed);
        let now = unix_now();
        let step = plan::next_step(&observed, seen, now, self.config.settings(), &self.provider)
            .map_err(LookError::Mint)?;
        let (reason, contents, handles_rotation_request) = match step {
            Step::Wait { until } if configuration.is_none() => {
                return Ok(Next::After(until_due(until).min(RETRY)))
            }
            Step::Wait { until } => return Ok(Next::After(until_due(until))),
            Step::Write {
                reason,
                contents,
                handles_rotation_request,
            } => (reason, contents, handles_rotation_request),
        };
        let nothing_to_serve = matches!(reason, Reason::Initial | Reason::LeafInvalid);
        if configuration.is_none() && !nothing_to_serve {
            return Ok(Next::After(RETRY));
        }
        let new = secret::with_contents(secret, *contents, handles_rotation_request);
        match self.secret.replace(&new).await? {
            Replaced::Written(written) => {
                tracing::info!(
                    reason = reason.as_str(),
                    secret = %self.config.secret(),
                    "TLS Secret written"
                );
                self.serving.metrics.tls_secret_written(reason.as_str());
                Ok(Next::Now(written))
            }
            Replaced::Conflict => {
                tracing::debug!(
                    reason = reason.as_str(),
                    "another replica wrote the TLS Secret first"
                );
                Ok(Next::After(CONFLICT_WAIT))
            }
        }
    }

    /// Patches every entry's `caBundle` to the Secret's `ca.crt` where they differ, if the
    /// Secret is usable and still the latest (re-read: the watch may lag).
    async fn sync_bundle(
        &self,
        configuration: &MutatingWebhookConfiguration,
        secret: &Secret,
        observed: &Observed,
    ) -> Result<Synced, LookError> {
        let Some(bundle) = bundle::outdated(configuration, observed, unix_now()) else {
            return Ok(Synced::Unchanged);
        };
        let latest = self.secret.reread().await?;
        if latest.metadata.resource_version != secret.metadata.resource_version {
            // A newer Secret is on its way through the watch; sync from that one.
            return Ok(Synced::Unchanged);
        }
        self.configuration
            .patch_bundle(configuration, &bundle, observed.cas.len())
            .await
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
}

/// The time left until `at` (seconds since the epoch), zero if it is past.
fn until_due(at: i64) -> Duration {
    Duration::from_secs(u64::try_from(at - unix_now()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_watch_is_caught_up_with_well_within_the_overlap() {
        let secs = |s| resync(Duration::from_secs(s)).as_secs() as i64;
        assert_eq!(secs(30), 10, "the default overlap");
        assert_eq!(secs(5), 2, "overlays/local: at most 2 s, not less");
        assert_eq!(secs(0), 2);
        assert_eq!(secs(180), 60);
        assert_eq!(secs(u64::MAX), 60);
        for overlap in [3, 5, 6, 30, 90, 179] {
            assert!(secs(overlap) * 2 <= overlap.max(4) as i64, "{overlap}");
        }
    }
}
