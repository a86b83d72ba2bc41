//! The rotation schedule, as a pure function: what the Secret holds, what the webhook
//! configuration trusts and the time in; the one next step out. Every replica runs it on the same
//! observed Secret and comes to the same answer; the API server's optimistic concurrency lets only
//! the first write through.
//!
//! A CA is replaced in three writes, each at least `overlap` after the previous one, so that the
//! API server always trusts the certificate every replica serves:
//! 1. a new CA joins the bundle (newest first); the serving certificate stays;
//! 2. once the webhook configuration trusts the new CA, a serving certificate signed by it;
//! 3. the old CA leaves the bundle.
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
    /// Empty, unreadable, or its newest CA expired or without its key: a new CA and certificate.
    Initial,
    /// Expired CAs leave the bundle.
    DropExpired,
    /// A new CA joins the bundle: the newest is in the last third of its life.
    CaRenewal,
    /// A new CA joins the bundle: `k8s-deputy.io/rotate` asked for one.
    CaRotationRequested,
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

/// Decides the next step. `trusts_newest`: every entry of the webhook configuration has the
/// newest CA in its `caBundle`.
pub fn next_step(
    observed: &Observed,
    trusts_newest: bool,
    now: i64,
    settings: &Settings,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Step, MintError> {
    let overlap = i64::try_from(settings.overlap.as_secs()).unwrap_or(i64::MAX);
    let newest = match observed.cas.first() {
        Some(ca) if ca.not_after > now && pki::key_matches(ca, &observed.ca_key) => ca,
        _ => return initial(observed, now, settings),
    };
    let leaf_issuer = observed.leaf.as_ref().and_then(|leaf| {
        pki::verified_by(
            &observed.cas,
            &leaf.cert,
            &settings.dns_names[0],
            now,
            provider,
        )
    });
    // The serving certificate to keep, if it is one the API server accepts now.
    let valid_leaf = match (&observed.leaf, leaf_issuer) {
        (Some(leaf), Some(_)) => Some(leaf.clone()),
        _ => None,
    };
    let mint_leaf = |ca: &CaCert, ca_key: &str| {
        pki::mint_leaf(ca, ca_key, &settings.dns_names, now, settings.leaf_validity)
    };
    let same_cas = |reason, leaf| write(reason, &observed.cas, &observed.ca_key, leaf);

    let live: Vec<CaCert> = observed
        .cas
        .iter()
        .filter(|ca| ca.not_after > now)
        .cloned()
        .collect();
    if live.len() < observed.cas.len() {
        // A verified serving certificate chains to a live CA, so it stays valid.
        let leaf = match valid_leaf {
            Some(leaf) => leaf,
            None => mint_leaf(newest, &observed.ca_key)?,
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
        let new_ca = pki::mint_ca(now, settings.ca_validity)?;
        let mut cas = pki::parse_bundle(&new_ca.cert);
        cas.extend(observed.cas.iter().cloned());
        // Without a valid serving certificate there is nothing to keep: the new CA signs one.
        let leaf = match valid_leaf {
            Some(leaf) => leaf,
            None => mint_leaf(&cas[0], &new_ca.key)?,
        };
        let mut step = write(reason, &cas, &new_ca.key, leaf);
        if let Step::Write {
            handles_rotation_request,
            ..
        } = &mut step
        {
            *handles_rotation_request = observed.rotation_requested;
        }
        return Ok(step);
    }

    let (Some(leaf), Some(issuer)) = (valid_leaf, leaf_issuer) else {
        return Ok(same_cas(
            Reason::LeafInvalid,
            mint_leaf(newest, &observed.ca_key)?,
        ));
    };
    if issuer != 0 {
        let switch_at = newest.issued_at.saturating_add(overlap);
        if trusts_newest && now >= switch_at {
            return Ok(same_cas(
                Reason::LeafFromNewCa,
                mint_leaf(newest, &observed.ca_key)?,
            ));
        }
        // Until the configuration trusts the new CA (whoever sees this patches it), look again soon.
        let until = if trusts_newest { switch_at } else { now + 2 };
        return Ok(Step::Wait { until });
    }
    let leaf_validity = pki::pem_validity(&leaf.cert);
    let leaf_renew_at = leaf_validity.map_or(now, |v| v.renew_at());
    if now >= leaf_renew_at {
        return Ok(same_cas(
            Reason::LeafRenewal,
            mint_leaf(newest, &observed.ca_key)?,
        ));
    }
    let mut until = leaf_renew_at.min(validity_of(newest).renew_at());
    if mid_rotation {
        let prune_at = leaf_validity
            .map_or(now, |v| v.issued_at)
            .saturating_add(overlap);
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
    Ok(Step::Wait { until })
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
    let mut step = write(Reason::Initial, &cas, &ca.key, leaf);
    if let Step::Write {
        handles_rotation_request,
        ..
    } = &mut step
    {
        *handles_rotation_request = observed.rotation_requested;
    }
    Ok(step)
}

fn validity_of(ca: &CaCert) -> pki::Validity {
    pki::Validity {
        issued_at: ca.issued_at,
        not_after: ca.not_after,
    }
}
