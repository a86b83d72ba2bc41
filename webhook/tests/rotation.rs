//! The `--tls-secret` rotation schedule over simulated years: real certificates (rcgen) checked
//! the way the API server checks them (rustls' webpki verifier for `<service>.<namespace>.svc`),
//! with the clock passed in. The invariant: whatever a replica serves — the Secret's new pair, or
//! the previous one while its watch lags — is trusted by the `caBundle`, before and after the
//! configuration catches up with the Secret; and the waits between the steps of a CA change are
//! counted from what the replica saw, not from the certificates' own times.

use std::sync::Arc;
use std::time::Duration;

use deputy_webhook::selfsigned::pki::{self, PemPair};
use deputy_webhook::selfsigned::plan::{
    next_step, Contents, Observed, Reason, Seen, Settings, Step,
};

const DAY: u64 = 24 * 3600;
/// 2026-11-25T00:00:00Z.
const START: i64 = 1_795_564_800;

fn settings() -> Settings {
    Settings {
        ca_validity: Duration::from_secs(365 * DAY),
        leaf_validity: Duration::from_secs(30 * DAY),
        overlap: Duration::from_secs(30),
        dns_names: vec![
            "deputy-webhook.deputy-system.svc".into(),
            "deputy-webhook.deputy-system.svc.cluster.local".into(),
        ],
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    deputy_webhook::tls::provider()
}

fn apply(observed: &mut Observed, contents: &Contents) {
    observed.cas = pki::parse_bundle(&contents.ca_bundle);
    observed.ca_key.clone_from(&contents.ca_key);
    observed.leaf = Some(contents.leaf.clone());
}

/// Whether the API server, trusting `bundle`, accepts `leaf` at `now`.
fn trusted(bundle: &str, leaf: &PemPair, now: i64) -> bool {
    let cas = pki::parse_bundle(bundle);
    pki::verified_by(&cas, &leaf.cert, &settings().dns_names[0], now, &provider()).is_some()
}

/// What a replica saw: the newest CA trusted since `since` (None: not trusted), and the current
/// certificate since the start.
fn trusted_since(since: impl Into<Option<i64>>) -> Seen {
    Seen {
        newest_trusted_since: since.into(),
        leaf_since: START,
    }
}

fn contains_newest(bundle: &str, observed: &Observed) -> bool {
    observed.cas.first().is_some_and(|newest| {
        pki::parse_bundle(bundle)
            .iter()
            .any(|ca| ca.der == newest.der)
    })
}

/// Runs the schedule from an empty Secret for `years`; the configuration catches up with each
/// write `lag` seconds later (0: at once). Returns the writes with their times.
fn simulate(years: u64, lag: i64, observed: &mut Observed) -> Vec<(i64, Reason)> {
    let (settings, provider) = (settings(), provider());
    let mut configured = String::new();
    let mut pending: Option<(i64, String)> = None;
    let mut trust = None;
    let mut now = START;
    let mut writes = Vec::new();
    let mut seen = Seen {
        newest_trusted_since: None,
        leaf_since: START,
    };
    let end = START + i64::try_from(years * 365 * DAY).unwrap();
    while now < end {
        if let Some((_, bundle)) = pending.take_if(|(at, _)| *at <= now) {
            configured = bundle;
        }
        // What the replica sees of the configuration, and since when (for this newest CA).
        let newest = observed.cas.first().map(|ca| ca.der.clone());
        trust = match trust.take() {
            Some((ca, since))
                if Some(&ca) == newest.as_ref() && contains_newest(&configured, observed) =>
            {
                Some((ca, since))
            }
            _ => newest
                .filter(|_| contains_newest(&configured, observed))
                .map(|ca| (ca, now)),
        };
        seen.newest_trusted_since = trust.as_ref().map(|(_, since)| *since);
        match next_step(observed, seen, now, &settings, &provider).unwrap() {
            Step::Wait { until } => {
                let leaf = observed
                    .leaf
                    .as_ref()
                    .expect("a pair is served while waiting");
                assert!(
                    trusted(&configured, leaf, now),
                    "served pair untrusted at {now}"
                );
                assert!(
                    until > now,
                    "Wait must move time forward ({until} <= {now})"
                );
                // The controller looks at least every minute and at every change; jumping is
                // equivalent as no step falls due before `until`.
                now = pending.as_ref().map_or(until, |(at, _)| until.min(*at));
            }
            Step::Write {
                reason, contents, ..
            } => {
                let before = observed.leaf.clone();
                apply(observed, &contents);
                if reason != Reason::Initial {
                    let old = before.clone().expect("a pair was served before");
                    // Replicas lag the Secret and the configuration lags too: all four mixes.
                    for leaf in [&old, &contents.leaf] {
                        for trust in [&configured, &contents.ca_bundle] {
                            assert!(
                                trusted(trust, leaf, now),
                                "{reason:?} at {now}: a served pair is not trusted"
                            );
                        }
                    }
                }
                assert!(observed.cas.len() <= 2, "at most two CAs in the bundle");
                if before.as_ref() != observed.leaf.as_ref() {
                    seen.leaf_since = now;
                }
                if lag == 0 || reason == Reason::Initial {
                    configured = contents.ca_bundle.clone();
                } else {
                    pending = Some((now + lag, contents.ca_bundle.clone()));
                }
                writes.push((now, reason));
            }
        }
    }
    writes
}

#[test]
fn three_years_from_an_empty_secret_never_serve_an_untrusted_pair() {
    let mut observed = Observed::default();
    let writes = simulate(3, 0, &mut observed);
    let count = |reason| writes.iter().filter(|(_, r)| *r == reason).count();
    assert_eq!(writes[0], (START, Reason::Initial));
    assert_eq!(count(Reason::Initial), 1);
    // A 365-day CA renewed with a third left: every ~243 days, 4 times in 3 years.
    assert_eq!(count(Reason::CaRenewal), 4, "{writes:?}");
    assert_eq!(count(Reason::LeafFromNewCa), 4);
    assert_eq!(count(Reason::PruneOldCas), 4);
    // 30-day certificates renewed every ~20 days: about 54 in 3 years, fewer as the CA switches
    // reset their clock.
    let renewals = count(Reason::LeafRenewal);
    assert!((40..=56).contains(&renewals), "{renewals} leaf renewals");
    assert_eq!(count(Reason::LeafInvalid) + count(Reason::DropExpired), 0);
    // Each CA change takes three writes at least the overlap apart.
    for window in writes.windows(3) {
        if window[0].1 == Reason::CaRenewal {
            assert_eq!(window[1].1, Reason::LeafFromNewCa);
            assert_eq!(window[2].1, Reason::PruneOldCas);
            assert!(window[1].0 - window[0].0 >= 30 && window[2].0 - window[1].0 >= 30);
        }
    }
}

#[test]
fn a_configuration_that_catches_up_late_only_delays_the_steps() {
    // Two minutes of lag for every caBundle patch: four times the overlap.
    let mut observed = Observed::default();
    let writes = simulate(2, 120, &mut observed);
    for window in writes.windows(3) {
        if window[0].1 == Reason::CaRenewal {
            assert_eq!(window[1].1, Reason::LeafFromNewCa);
            assert!(
                window[1].0 - window[0].0 >= 120 + 30,
                "the new certificate waits for the trust, then the overlap: {window:?}"
            );
        }
    }
    assert!(writes.iter().any(|(_, r)| *r == Reason::CaRenewal));
}

#[test]
fn a_requested_rotation_goes_through_the_same_three_steps() {
    let (settings, provider) = (settings(), provider());
    let mut observed = Observed::default();
    simulate(0, 0, &mut observed);
    let Step::Write { contents, .. } =
        next_step(&observed, Seen::default(), START, &settings, &provider).unwrap()
    else {
        panic!("an empty Secret is filled")
    };
    apply(&mut observed, &contents);
    let first_ca = observed.cas[0].der.clone();
    let configured = contents.ca_bundle.clone();

    observed.rotation_requested = true;
    let now = START + 10;
    let Step::Write {
        reason,
        contents,
        handles_rotation_request,
    } = next_step(&observed, trusted_since(START), now, &settings, &provider).unwrap()
    else {
        panic!("a requested rotation writes")
    };
    assert_eq!(reason, Reason::CaRotationRequested);
    assert!(handles_rotation_request);
    let served = observed.leaf.clone().unwrap();
    apply(&mut observed, &contents);
    observed.rotation_requested = false;
    assert_eq!(observed.cas.len(), 2);
    assert_eq!(observed.cas[1].der, first_ca, "the old CA stays, second");
    assert_eq!(
        observed.leaf.as_ref(),
        Some(&served),
        "the served pair stays"
    );

    // The configuration has not caught up: no new certificate, however long it takes.
    let later = now + 3600;
    assert!(!contains_newest(&configured, &observed));
    assert!(matches!(
        next_step(&observed, trusted_since(None), later, &settings, &provider).unwrap(),
        Step::Wait { .. }
    ));
    // It has (seen at `later`, late), but not for the overlap yet: wait until it has, counted
    // from when it was seen, not from the CA's own time.
    match next_step(
        &observed,
        trusted_since(later),
        later + 5,
        &settings,
        &provider,
    )
    .unwrap()
    {
        Step::Wait { until } => assert_eq!(until, later + 30),
        Step::Write { reason, .. } => panic!("wrote {reason:?} within the overlap"),
    }
    // A rotation asked for again mid-rotation waits for this one to finish.
    let mut asked_again = observed.clone();
    asked_again.rotation_requested = true;
    assert!(matches!(
        next_step(
            &asked_again,
            trusted_since(later),
            later + 5,
            &settings,
            &provider
        )
        .unwrap(),
        Step::Wait { .. }
    ));
    let now = later;
    let Step::Write {
        reason, contents, ..
    } = next_step(
        &observed,
        trusted_since(now),
        now + 30,
        &settings,
        &provider,
    )
    .unwrap()
    else {
        panic!("the new CA signs a certificate")
    };
    assert_eq!(reason, Reason::LeafFromNewCa);
    apply(&mut observed, &contents);
    assert!(trusted(&contents.ca_bundle, &contents.leaf, now + 30));
    assert!(
        !trusted(&configured, &contents.leaf, now + 30),
        "signed by the new CA"
    );
    // The old CA stays until the new certificate has been seen for the overlap.
    let leaf_seen = Seen {
        newest_trusted_since: Some(now),
        leaf_since: now + 30,
    };
    match next_step(&observed, leaf_seen, now + 45, &settings, &provider).unwrap() {
        Step::Wait { until } => assert_eq!(until, now + 60),
        Step::Write { reason, .. } => panic!("wrote {reason:?} within the overlap"),
    }
    let Step::Write {
        reason, contents, ..
    } = next_step(&observed, leaf_seen, now + 60, &settings, &provider).unwrap()
    else {
        panic!("the old CA is dropped")
    };
    assert_eq!(reason, Reason::PruneOldCas);
    assert_eq!(pki::parse_bundle(&contents.ca_bundle).len(), 1);
}

#[test]
fn damaged_or_foreign_contents_are_repaired() {
    let (settings, provider) = (settings(), provider());
    let write_reason = |observed: &Observed, now| match next_step(
        observed,
        trusted_since(START),
        now,
        &settings,
        &provider,
    )
    .unwrap()
    {
        Step::Write { reason, .. } => Some(reason),
        Step::Wait { .. } => None,
    };
    let mut observed = Observed::default();
    simulate(0, 0, &mut observed);
    let Step::Write { contents, .. } =
        next_step(&observed, trusted_since(START), START, &settings, &provider).unwrap()
    else {
        panic!()
    };
    apply(&mut observed, &contents);
    assert_eq!(
        write_reason(&observed, START + 1),
        None,
        "a fresh Secret is left alone"
    );

    let mut garbage = observed.clone();
    garbage.cas = pki::parse_bundle("not PEM at all");
    assert_eq!(write_reason(&garbage, START + 1), Some(Reason::Initial));

    // The CA's key lost (or replaced) while the serving certificate is valid: a new CA joins the
    // bundle and the certificate stays, the overlapping way; with nothing valid to serve either,
    // everything is made anew.
    let mut wrong_key = observed.clone();
    wrong_key.ca_key = pki::mint_ca(START, Duration::from_secs(DAY)).unwrap().key;
    assert_eq!(write_reason(&wrong_key, START + 1), Some(Reason::CaKeyLost));
    let Step::Write { contents, .. } = next_step(
        &wrong_key,
        trusted_since(START),
        START + 1,
        &settings,
        &provider,
    )
    .unwrap() else {
        panic!()
    };
    let bundle = pki::parse_bundle(&contents.ca_bundle);
    assert_eq!(bundle.len(), 2);
    assert_eq!(
        bundle[1].der, observed.cas[0].der,
        "the old CA stays trusted"
    );
    assert_eq!(
        Some(&contents.leaf),
        observed.leaf.as_ref(),
        "the certificate stays"
    );
    let mut lost_everything = wrong_key.clone();
    lost_everything.leaf = None;
    assert_eq!(
        write_reason(&lost_everything, START + 1),
        Some(Reason::Initial)
    );

    // A serving key that is not the certificate's own (the API server would accept the
    // certificate, but no handshake could complete): re-issued.
    let mut foreign_key = observed.clone();
    let stranger = pki::mint_ca(START, Duration::from_secs(DAY)).unwrap();
    foreign_key.leaf.as_mut().unwrap().key = stranger.key;
    assert_eq!(
        write_reason(&foreign_key, START + 1),
        Some(Reason::LeafInvalid)
    );

    let mut other_service = observed.clone();
    let ca = &observed.cas[0];
    other_service.leaf = Some(
        pki::mint_leaf(
            ca,
            &observed.ca_key,
            &["other.deputy-system.svc".into()],
            START,
            Duration::from_secs(DAY),
        )
        .unwrap(),
    );
    assert_eq!(
        write_reason(&other_service, START + 1),
        Some(Reason::LeafInvalid)
    );

    let mut no_leaf = observed.clone();
    no_leaf.leaf = None;
    assert_eq!(write_reason(&no_leaf, START + 1), Some(Reason::LeafInvalid));

    // An old CA past its notAfter leaves the bundle, the newest stays.
    let mut with_expired = observed.clone();
    let short = pki::mint_ca(START, Duration::from_secs(60)).unwrap();
    with_expired.cas.extend(pki::parse_bundle(&short.cert));
    assert_eq!(
        write_reason(&with_expired, START + 120),
        Some(Reason::DropExpired)
    );

    // A CA past its notAfter as the newest: start again.
    assert_eq!(
        write_reason(&observed, START + 366 * 86_400),
        Some(Reason::Initial)
    );
}
