//! The serving certificate of `deputy-webhook serve` as a real process: rotation under load,
//! refused new pairs (the old one kept), files rewritten in place, and readiness until a valid
//! pair is loaded. Real TLS with certificates made here (rcgen); every wait is a bounded poll.

mod server_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use server_support::*;

#[test]
fn certificate_rotation_while_requests_run_fails_none_and_new_handshakes_see_the_new_pair() {
    let (ca, mut certs, server) = started();
    let server = Arc::new(server);
    let old = server.presented_cert();
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    // Two kinds of clients: one keep-alive connection (established before the rotation, must be
    // unharmed), and a new connection per request (handshakes across the rotation).
    let workers: Vec<_> = [true, false]
        .into_iter()
        .map(|keep_alive| {
            let (server, stop, failures, done) = (
                Arc::clone(&server),
                Arc::clone(&stop),
                Arc::clone(&failures),
                Arc::clone(&done),
            );
            std::thread::spawn(move || {
                let shared = server.client();
                let deadline = Instant::now() + Duration::from_secs(30);
                let mut i = 0;
                while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
                    let client = if keep_alive {
                        shared.clone()
                    } else {
                        server.client()
                    };
                    let uid = format!("rotation-{keep_alive}-{i}");
                    match server.post_with(&client, &pod_review(&uid)) {
                        Ok((200, body)) if body.contains(&uid) => {
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        other => {
                            eprintln!("failed request during rotation: {other:?}");
                            failures.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();

    poll(Duration::from_secs(10), || {
        (done.load(Ordering::SeqCst) >= 20).then_some(())
    })
    .expect("requests flow before the rotation");
    let new = ca.leaf("second");
    certs.rotate(&new);
    let seen = poll(Duration::from_secs(10), || {
        (server.presented_cert() == new.der).then_some(())
    });
    let before_stop = done.load(Ordering::SeqCst);
    poll(Duration::from_secs(10), || {
        (done.load(Ordering::SeqCst) >= before_stop + 20).then_some(())
    })
    .expect("requests flow after the rotation");
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.join().unwrap();
    }
    assert!(
        seen.is_some(),
        "new handshakes are served the new certificate"
    );
    assert_ne!(old, new.der);
    assert_eq!(failures.load(Ordering::SeqCst), 0, "no request failed");
    assert_eq!(
        server.metric(r#"deputy_tls_reloads_total{result="loaded"}"#),
        Some(2.0)
    );
    assert!(server
        .wait_log(Duration::from_secs(1), |v| v["message"]
            == "serving certificate loaded"
            && v["first"] == false)
        .is_some());
}

#[test]
fn a_new_pair_whose_key_does_not_match_is_refused_and_the_old_one_kept() {
    let (ca, mut certs, server) = started();
    let old = server.presented_cert();
    let a = ca.leaf("a");
    let b = ca.leaf("b");
    certs.update(&a.cert_pem, &b.key_pem);
    let refused = server.wait_log(Duration::from_secs(10), |v| {
        v["message"] == "new serving certificate refused"
    });
    let refused = refused.expect("a refusal log line");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .contains("does not match"),
        "{refused}"
    );
    assert_eq!(refused["keeping_previous"], true);
    assert_eq!(
        server.metric(r#"deputy_tls_reloads_total{result="refused"}"#),
        Some(1.0)
    );
    assert_eq!(server.presented_cert(), old, "the old pair is still served");
    assert_eq!(server.post(&pod_review("after-mismatch")).0, 200);
    assert_eq!(server.admin_get("/readyz").unwrap().0, 200);

    // Negative control: the same files fixed are taken.
    certs.rotate(&a);
    let taken = poll(Duration::from_secs(10), || {
        (server.presented_cert() == a.der).then_some(())
    });
    assert!(taken.is_some(), "a matching pair is loaded");
}

#[test]
fn an_expired_new_pair_is_refused_and_the_old_one_kept() {
    let (ca, mut certs, server) = started();
    let old = server.presented_cert();
    certs.rotate(&ca.expired_leaf("expired"));
    let refused = server
        .wait_log(Duration::from_secs(10), |v| {
            v["message"] == "new serving certificate refused"
        })
        .expect("a refusal log line");
    assert!(
        refused["error"].as_str().unwrap().contains("expired"),
        "{refused}"
    );
    assert_eq!(server.presented_cert(), old);
    assert_eq!(server.post(&pod_review("after-expired")).0, 200);
}

#[test]
fn files_rewritten_in_place_are_reloaded_once_the_pair_matches() {
    // Not a Secret volume: plain files rewritten one after the other (cert, then key), as some
    // tools do. In between, the pair does not match and is refused; then the new pair is taken.
    let ca = Ca::new();
    let dir = TempDir::new("plain");
    let (cert, key) = (dir.0.join("server.pem"), dir.0.join("server-key.pem"));
    let first = ca.leaf("first");
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let server = Server::start_with_files(&ca, &cert, &key, &[]);
    server.wait_ready();
    assert_eq!(server.presented_cert(), first.der);

    let second = ca.leaf("second");
    std::fs::write(&cert, &second.cert_pem).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(400)); // a slow writer
    std::fs::write(&key, &second.key_pem).unwrap();
    let taken = poll(Duration::from_secs(10), || {
        (server.presented_cert() == second.der).then_some(())
    });
    assert!(taken.is_some(), "the rewritten pair is served");
    assert_eq!(server.post(&pod_review("after-rewrite")).0, 200);
}

#[test]
fn not_ready_until_a_valid_certificate_is_loaded() {
    let ca = Ca::new();
    let mut certs = SecretVolume::new(&ca.expired_leaf("expired"));
    let server = Server::start(&ca, &certs, &[]);
    assert_eq!(server.admin_get("/healthz").unwrap().0, 200);
    let (status, body) = server.admin_get("/readyz").unwrap();
    assert_eq!(status, 503);
    assert!(body.contains("no serving certificate"), "{body}");
    // A handshake without a certificate fails, without harming the server.
    assert!(server
        .post_with(&server.client(), &pod_review("no-cert"))
        .is_err());

    let valid = ca.leaf("valid");
    certs.rotate(&valid);
    server.wait_ready();
    assert_eq!(server.presented_cert(), valid.der);
    assert_eq!(server.post(&pod_review("now-ready")).0, 200);
}
