//! The rotation schedule, as a pure function: what the Secret holds, what this replica has seen
//! of the webhook configuration and since when, and the time in; the one next step out. Every replica runs it on the same
//! observed Secret and comes to the same answer; the API server's optimistic concurrency lets only
//! the first write through.
//!
//! A CA is replaced in three writes, so that the API server always trusts the certificate every
//! replica serves:
//! 1. a new CA joins the bundle (newest first); the serving certificate stays;
//! 2. once this replica has seen the webhook configuration trust the new CA for `overlap`, a
//!    serving certificate signed by it;
//! 3. once this replica has seen that certificate in the Secret for `overlap`, the old CA leaves.
//!
//! The waits are measured from what this replica saw (its own clock, [`Seen`]), not from times
//! inside the certificates, so that a late `caBundle` patch or a skewed clock cannot shorten them.
//!
//! A serving certificate alone is renewed in one write (its CA is trusted already).

use std::sync::Arc;
use std::time::Duration;

use super::pki::{self, CaCert, MintError, PemPair};

/// The lifetimes and names of the certificates.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lifetime of a new CA.
    pub ca_validity: Duration,
    /// Lifetime of a new serving certificate (capped at its CA's `notAfter`).
    pub leaf_validity: Duration,
    /// The least time between two writes of one CA change: long enough for the API server and
    /// every replica to see the previous one.
    pub overlap: Duration,
    /// The serving certificate's names; the first is the one the API server dials
    /// (`<service>.<namespace>.svc`).
    pub dns_names: Vec<String>,
}

/// What the Secret holds, read.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// `ca.crt`: the trusted CAs, newest first.
    pub cas: Vec<CaCert>,
    /// `ca.key`: the key of the newest CA.
    pub ca_key: String,
    /// `tls.crt` and `tls.key`.
    pub leaf: Option<PemPair>,
    /// The `k8s-deputy.io/rotate` annotation differs from the last one acted on.
    pub rotation_requested: bool,
}

/// Why the Secret is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Empty, unreadable, or nothing valid to serve: a new CA and certificate at once.
    Initial,
    /// Expired CAs leave the bundle.
    DropExpired,
    /// A new CA joins the bundle: the newest is in the last third of its life.
    CaRenewal,
    /// A new CA joins the bundle: `k8s-deputy.io/rotate` asked for one.
    CaRotationRequested,
    /// A new CA joins the bundle: the newest CA's key is missing or is not its key, but the
    /// serving certificate is still valid (so the old CAs stay trusted meanwhile).
    CaKeyLost,
    /// The serving certificate is missing, invalid, expired, or not for the service's name.
    LeafInvalid,
    /// The serving certificate is re-signed by the newest CA.
    LeafFromNewCa,
    /// The serving certificate is in the last third of its life.
    LeafRenewal,
    /// The old CAs leave the bundle: nobody serves a certificate they signed.
    PruneOldCas,
}

impl Reason {
    /// The label value of metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Initial => "initial",
            Self::DropExpired => "drop_expired",
            Self::CaRenewal => "ca_renewal",
            Self::CaRotationRequested => "ca_rotation_requested",
            Self::CaKeyLost => "ca_key_lost",
            Self::LeafInvalid => "leaf_invalid",
            Self::LeafFromNewCa => "leaf_from_new_ca",
            Self::LeafRenewal => "leaf_renewal",
            Self::PruneOldCas => "prune_old_cas",
        }
    }
}

/// The Secret's new content.
#[derive(Debug, Clone)]
pub struct Contents {
    /// `ca.crt`.
    pub ca_bundle: String,
    /// `ca.key`.
    pub ca_key: String,
    /// `tls.crt` and `tls.key`.
    pub leaf: PemPair,
}

/// The next step.
#[derive(Debug)]
pub enum Step {
    /// Nothing to write; look again at this time at the latest (seconds since the epoch).
    Wait {
        /// When something falls due.
        until: i64,
    },
    /// Write the Secret.
    Write {
        /// Why.
        reason: Reason,
        /// What.
        contents: Box<Contents>,
        /// The write acts on `k8s-deputy.io/rotate`.
        handles_rotation_request: bool,
    },
}

/// What this replica has seen, and since when (seconds since the epoch on its clock).
#[derive(Debug, Clone, Copy, Default)]
pub struct Seen {
    /// Since when every entry of the webhook configuration has trusted the newest CA, if it does.
    pub newest_trusted_since: Option<i64>,
    /// Since when the Secret has held its current serving certificate.
    pub leaf_since: i64,
}

/// How long to wait for the configuration to trust a new CA before looking again.
const TRUST_RECHECK_SECS: i64 = 5;

/// Decides the next step.
pub fn next_step(
    observed: &Observed,
    seen: Seen,
    now: i64,
    settings: &Settings,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Step, MintError> {
    let overlap = i64::try_from(settings.overlap.as_secs()).unwrap_or(i64::MAX);
    let live: Vec<CaCert> = observed
        .cas
        .iter()
        .filter(|ca| ca.not_after > now)
        .cloned()
        .collect();
    // The serving certificate, if the API server accepts it now under one of the live CAs and
    // its key is its own; and which CA signed it.
    let valid_leaf = observed.leaf.as_ref().and_then(|leaf| {
        let issuer = pki::verified_by(&live, &leaf.cert, &settings.dns_names[0], now, provider)?;
        pki::leaf_key_matches(leaf).then(|| (leaf.clone(), issuer))
    });
    let newest = match observed.cas.first() {
        Some(ca) if ca.not_after > now && pki::key_matches(ca, &observed.ca_key) => ca,
        _ => {
            return match valid_leaf {
                // Keep serving what is trusted; replace the CA the overlapping way.
                Some((leaf, _)) => new_ca(Reason::CaKeyLost, &live, leaf, observed, now, settings),
                None => initial(observed, now, settings),
            };
        }
    };
    let mint_leaf = || {
        let leaf = pki::mint_leaf(
            newest,
            &observed.ca_key,
            &settings.dns_names,
            now,
            settings.leaf_validity,
        )?;
        check_minted(&leaf, newest, now, settings, provider)?;
        Ok::<_, MintError>(leaf)
    };
    let same_cas = |reason, leaf| write(reason, &observed.cas, &observed.ca_key, leaf);

    if live.len() < observed.cas.len() {
        let leaf = match valid_leaf {
            Some((leaf, _)) => leaf,
            None => mint_leaf()?,
        };
        return Ok(write(Reason::DropExpired, &live, &observed.ca_key, leaf));
    }

    let mid_rotation = observed.cas.len() > 1;
    if !mid_rotation && (observed.rotation_requested || now >= validity_of(newest).renew_at()) {
        let reason = if observed.rotation_requested {
            Reason::CaRotationRequested
        } else {
            Reason::CaRenewal
        };
        return match valid_leaf {
            Some((leaf, _)) => new_ca(reason, &observed.cas, leaf, observed, now, settings),
            // Nothing valid to keep: a new CA and a certificate from it at once.
            None => initial(observed, now, settings),
        };
    }

    let Some((leaf, issuer)) = valid_leaf else {
        return Ok(same_cas(Reason::LeafInvalid, mint_leaf()?));
    };
    if issuer != 0 {
        return Ok(match seen.newest_trusted_since {
            Some(since) if now >= since.saturating_add(overlap) => {
                same_cas(Reason::LeafFromNewCa, mint_leaf()?)
            }
            Some(since) => Step::Wait {
                until: since.saturating_add(overlap),
            },
            // The configuration is patched by whoever sees this; look again soon.
            None => Step::Wait {
                until: now + TRUST_RECHECK_SECS,
            },
        });
    }
    let leaf_validity = pki::pem_validity(&leaf.cert);
    let leaf_renew_at = leaf_validity.map_or(now, |v| v.renew_at());
    if now >= leaf_renew_at {
        return Ok(same_cas(Reason::LeafRenewal, mint_leaf()?));
    }
    let mut until = leaf_renew_at.min(validity_of(newest).renew_at());
    if mid_rotation {
        let prune_at = seen.leaf_since.saturating_add(overlap);
        if now >= prune_at {
            return Ok(write(
                Reason::PruneOldCas,
                &observed.cas[..1],
                &observed.ca_key,
                leaf,
            ));
        }
        until = until.min(prune_at);
    }
    // Never a time already past: the caller would look again at once, and again.
    Ok(Step::Wait {
        until: until.max(now + 1),
    })
}

/// A new CA first in the bundle, before `cas`; the serving certificate stays.
fn new_ca(
    reason: Reason,
    cas: &[CaCert],
    leaf: PemPair,
    observed: &Observed,
    now: i64,
    settings: &Settings,
) -> Result<Step, MintError> {
    let new_ca = pki::mint_ca(now, settings.ca_validity)?;
    let mut bundle = pki::parse_bundle(&new_ca.cert);
    bundle.extend(cas.iter().cloned());
    Ok(requested(
        write(reason, &bundle, &new_ca.key, leaf),
        observed,
    ))
}

/// Marks a write as the answer to a pending `k8s-deputy.io/rotate`.
fn requested(mut step: Step, observed: &Observed) -> Step {
    if let Step::Write {
        handles_rotation_request,
        ..
    } = &mut step
    {
        *handles_rotation_request = observed.rotation_requested;
    }
    step
}

/// A certificate just minted must verify for the name the API server dials, or writing it would
/// only start a loop of writes (e.g. a service name that is not a DNS label).
fn check_minted(
    leaf: &PemPair,
    ca: &CaCert,
    now: i64,
    settings: &Settings,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<(), MintError> {
    let cas = std::slice::from_ref(ca);
    if pki::verified_by(cas, &leaf.cert, &settings.dns_names[0], now, provider).is_some() {
        Ok(())
    } else {
        Err(MintError::unverifiable(&settings.dns_names[0]))
    }
}

fn write(reason: Reason, cas: &[CaCert], ca_key: &str, leaf: PemPair) -> Step {
    Step::Write {
        reason,
        contents: Box::new(Contents {
            ca_bundle: pki::bundle_pem(cas),
            ca_key: ca_key.to_owned(),
            leaf,
        }),
        handles_rotation_request: false,
    }
}

fn initial(observed: &Observed, now: i64, settings: &Settings) -> Result<Step, MintError> {
    let ca = pki::mint_ca(now, settings.ca_validity)?;
    let cas = pki::parse_bundle(&ca.cert);
    let leaf = pki::mint_leaf(
        &cas[0],
        &ca.key,
        &settings.dns_names,
        now,
        settings.leaf_validity,
    )?;
    Ok(requested(
        write(Reason::Initial, &cas, &ca.key, leaf),
        observed,
    ))
}

fn validity_of(ca: &CaCert) -> pki::Validity {
    pki::Validity {
        issued_at: ca.issued_at,
        not_after: ca.not_after,
    }
}
