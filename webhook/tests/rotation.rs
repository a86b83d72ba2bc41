//! The `--tls-secret` rotation schedule over simulated years: real certificates (rcgen) checked
//! the way the API server checks them (rustls' webpki verifier for `<service>.<namespace>.svc`),
//! with the clock passed in. The invariant: whatever a replica serves — the Secret's new pair, or
//! the previous one while its watch lags — is trusted by the `caBundle`, before and after the
//! configuration catches up with the Secret.

use std::sync::Arc;
use std::time::Duration;

use deputy_webhook::selfsigned::pki::{self, PemPair};
use deputy_webhook::selfsigned::plan::{next_step, Contents, Observed, Reason, Settings, Step};

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

fn contains_newest(bundle: &str, observed: &Observed) -> bool {
    observed.cas.first().is_some_and(|newest| {
        pki::parse_bundle(bundle)
            .iter()
            .any(|ca| ca.der == newest.der)
    })
}

/// Runs the schedule from an empty Secret for `years`, the configuration catching up right after
/// each write; returns the writes with their times.
fn simulate(years: u64, observed: &mut Observed, mut configured: String) -> Vec<(i64, Reason)> {
    let (settings, provider) = (settings(), provider());
    let mut now = START;
    let mut writes = Vec::new();
    let end = START + i64::try_from(years * 365 * DAY).unwrap();
    while now < end {
        let trusts_newest = contains_newest(&configured, observed);
        match next_step(observed, trusts_newest, now, &settings, &provider).unwrap() {
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
                // The controller looks at least every minute; jumping is equivalent as no
                // step falls due before `until`.
                now = until;
            }
            Step::Write {
                reason, contents, ..
            } => {
                let before = observed.leaf.clone();
                apply(observed, &contents);
                let bundle = contents.ca_bundle.clone();
                if reason != Reason::Initial {
                    let old = before.expect("a pair was served before");
                    // Replicas lag the Secret and the configuration lags too: all four mixes.
                    for leaf in [&old, &contents.leaf] {
                        for trust in [&configured, &bundle] {
                            assert!(
                                trusted(trust, leaf, now),
                                "{reason:?} at {now}: a served pair is not trusted"
                            );
                        }
                    }
                }
                assert!(observed.cas.len() <= 2, "at most two CAs in the bundle");
                writes.push((now, reason));
                configured = bundle;
            }
        }
    }
    writes
}

#[test]
fn three_years_from_an_empty_secret_never_serve_an_untrusted_pair() {
    let mut observed = Observed::default();
    let writes = simulate(3, &mut observed, String::new());
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
fn a_requested_rotation_goes_through_the_same_three_steps() {
    let (settings, provider) = (settings(), provider());
    let mut observed = Observed::default();
    simulate(0, &mut observed, String::new());
    let Step::Write { contents, .. } =
        next_step(&observed, false, START, &settings, &provider).unwrap()
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
    } = next_step(&observed, true, now, &settings, &provider).unwrap()
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
        next_step(&observed, false, later, &settings, &provider).unwrap(),
        Step::Wait { .. }
    ));
    // It has, but the overlap has not passed: wait until it has.
    match next_step(&observed, true, now + 5, &settings, &provider).unwrap() {
        Step::Wait { until } => assert!(until >= now + 30, "{until}"),
        Step::Write { reason, .. } => panic!("wrote {reason:?} within the overlap"),
    }
    let Step::Write {
        reason, contents, ..
    } = next_step(&observed, true, now + 30, &settings, &provider).unwrap()
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
    let Step::Write {
        reason, contents, ..
    } = next_step(&observed, true, now + 60, &settings, &provider).unwrap()
    else {
        panic!("the old CA is dropped")
    };
    assert_eq!(reason, Reason::PruneOldCas);
    assert_eq!(pki::parse_bundle(&contents.ca_bundle).len(), 1);
}

#[test]
fn damaged_or_foreign_contents_are_repaired() {
    let (settings, provider) = (settings(), provider());
    let write_reason =
        |observed: &Observed, now| match next_step(observed, true, now, &settings, &provider)
            .unwrap()
        {
            Step::Write { reason, .. } => Some(reason),
            Step::Wait { .. } => None,
        };
    let mut observed = Observed::default();
    simulate(0, &mut observed, String::new());
    let Step::Write { contents, .. } =
        next_step(&observed, true, START, &settings, &provider).unwrap()
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

    let mut wrong_key = observed.clone();
    wrong_key.ca_key = pki::mint_ca(START, Duration::from_secs(DAY)).unwrap().key;
    assert_eq!(write_reason(&wrong_key, START + 1), Some(Reason::Initial));

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
