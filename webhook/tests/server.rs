//! `deputy-webhook serve` as a real process: real TLS (certificates made here with rcgen, clients
//! trusting only the test CA), real HTTP, loopback addresses only. Every wait is a bounded poll.

mod server_support;

use std::io::Write;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use server_support::*;

#[test]
fn admission_review_round_trip_returns_a_json_patch_and_echoes_the_uid() {
    let (_ca, _certs, server) = started();
    let (status, body) = server.post(&pod_review("0b7c-round-trip"));
    assert_eq!(status, 200, "{body}");
    let review: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["kind"], "AdmissionReview");
    let response = &review["response"];
    assert_eq!(response["uid"], "0b7c-round-trip");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: Value = serde_json::from_slice(&patch).unwrap();
    assert!(!patch.as_array().unwrap().is_empty());
    assert!(
        patch.to_string().contains(AGENT_IMAGE),
        "the --agent-image flag reaches the patch"
    );

    // One structured line for the admission, in a span carrying the uid.
    let line = server
        .wait_log(Duration::from_secs(5), |v| v["message"] == "admission")
        .expect("an admission log line");
    assert_eq!(line["span"]["uid"], "0b7c-round-trip");
    assert_eq!(line["namespace"], "apps");
    assert_eq!(line["name"], "web-7d9f-*");
    assert_eq!(line["result"], "injected");
    assert_eq!(line["reason"], "none");
    assert!(line["duration_us"].is_u64());
}

#[test]
fn a_body_that_is_not_json_is_a_400_with_a_message() {
    let (_ca, _certs, server) = started();
    let (status, body) = server.post(b"this is not json");
    assert_eq!(status, 400);
    assert!(body.contains("not JSON"), "{body}");
    // The server is unharmed.
    assert_eq!(server.post(&pod_review("after-400")).0, 200);
}

#[test]
fn a_body_that_is_not_an_admission_review_is_a_400() {
    let (_ca, _certs, server) = started();
    let pod =
        br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[]}}"#;
    let cases: [(&[u8], &str); 5] = [
        (pod, "no request"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
            "no request",
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"namespace":"apps"}}"#,
            "no uid",
        ),
        (br#"[1, 2, 3]"#, "no request"),
        (
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"x"}}"#,
            "v1beta1",
        ),
    ];
    for (body, expected) in cases {
        let (status, message) = server.post(body);
        assert_eq!(status, 400, "{}", String::from_utf8_lossy(body));
        assert!(
            message.contains(expected),
            "{message:?} should say {expected:?}"
        );
    }
    assert_eq!(
        server.metric(r#"deputy_admission_requests_total{result="bad_request",reason="none"}"#),
        Some(5.0)
    );
}

#[test]
fn a_body_over_the_4_mib_limit_is_a_413() {
    let (ca, _certs, server) = started();
    let limit = deputy_webhook::server::MAX_BODY_BYTES;
    assert_eq!(limit, 4 * 1024 * 1024);

    // Declared by Content-Length: refused before the body is read.
    let mut tls = tls_connect(server.addr, &ca.der);
    write_all(
        &mut tls,
        format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            limit + 1
        )
        .as_bytes(),
    );
    let (response, _) = read_until_closed(&mut tls, Duration::from_secs(10));
    assert_eq!(
        status_of(&response),
        Some(413),
        "{}",
        String::from_utf8_lossy(&response)
    );

    // Chunked, no length: refused once the limit is crossed. The last chunk and the terminator
    // go in one write so that nothing is left unread when the server closes.
    let mut tls = tls_connect(server.addr, &ca.der);
    write_all(
        &mut tls,
        b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    let chunk = vec![b' '; 1024 * 1024];
    for _ in 0..4 {
        write_all(&mut tls, format!("{:x}\r\n", chunk.len()).as_bytes());
        write_all(&mut tls, &chunk);
        write_all(&mut tls, b"\r\n");
    }
    write_all(&mut tls, b"1\r\n \r\n0\r\n\r\n");
    let (response, _) = read_until_closed(&mut tls, Duration::from_secs(10));
    assert_eq!(
        status_of(&response),
        Some(413),
        "{}",
        String::from_utf8_lossy(&response)
    );

    // Just under the limit is read (and is not JSON: 400, not 413).
    let (status, _) = server.post(&vec![b' '; limit - 1]);
    assert_eq!(status, 400);
    assert_eq!(
        server.metric(r#"deputy_admission_requests_total{result="too_large",reason="none"}"#),
        Some(2.0)
    );
}

#[test]
fn plaintext_http_on_the_tls_port_fails_cleanly() {
    let (_ca, _certs, server) = started();
    let mut tcp = TcpStream::connect(server.addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let body = pod_review("plaintext");
    tcp.write_all(
        format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let _ = tcp.write_all(&body);
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut tcp, Duration::from_secs(5));
    assert!(closed, "the server closes a plaintext connection");
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        !answer.starts_with(b"HTTP/"),
        "no HTTP answer in clear text"
    );
    // The server still serves TLS clients.
    assert_eq!(server.post(&pod_review("after-plaintext")).0, 200);
}

#[test]
fn stalled_clients_are_dropped_and_do_not_block_others() {
    let (ca, _certs, server) = started_with(&["--request-timeout", "1s"]);
    let started = Instant::now();
    // More stalled connections than workers, at every stage of a request.
    let mut silent: Vec<TcpStream> = (0..8)
        .map(|_| {
            let tcp = TcpStream::connect(server.addr).unwrap();
            tcp.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            tcp
        })
        .collect();
    let mut half_head: Vec<_> = (0..4)
        .map(|_| {
            let mut tls = tls_connect(server.addr, &ca.der);
            write_all(&mut tls, b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n");
            tls.sock
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            tls
        })
        .collect();
    let body = pod_review("stalled-body");
    let mut half_body: Vec<_> = (0..4)
        .map(|_| {
            let mut tls = tls_connect(server.addr, &ca.der);
            write_all(
                &mut tls,
                format!(
                    "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            );
            write_all(&mut tls, &body[..body.len() / 2]);
            tls.sock
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            tls
        })
        .collect();

    // Others are served at once meanwhile.
    let client = server.client();
    for i in 0..10 {
        let t = Instant::now();
        let (status, _) = server
            .post_with(&client, &pod_review(&format!("busy-{i}")))
            .unwrap();
        assert_eq!(status, 200);
        assert!(
            t.elapsed() < Duration::from_millis(900),
            "{:?}",
            t.elapsed()
        );
    }

    // And the stalled ones are dropped after the 1 s timeout.
    for tcp in &mut silent {
        let (_, closed) = read_until_closed(tcp, Duration::from_secs(5));
        assert!(closed, "a silent connection is closed");
    }
    for tls in &mut half_head {
        let (response, closed) = read_until_closed(tls, Duration::from_secs(5));
        assert!(closed, "a connection stalled in its head is closed");
        let status = status_of(&response);
        assert!(status.is_none() || status == Some(408), "{status:?}");
    }
    for tls in &mut half_body {
        let (response, closed) = read_until_closed(tls, Duration::from_secs(5));
        assert!(closed, "a connection stalled in its body is closed");
        assert_eq!(
            status_of(&response),
            Some(408),
            "{}",
            String::from_utf8_lossy(&response)
        );
    }
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(server.post(&pod_review("after-stalls")).0, 200);
}

#[test]
fn health_and_metrics_endpoints_answer_on_the_plain_port() {
    let (_ca, _certs, server) = started();
    assert_eq!(server.post(&pod_review("metrics-1")).0, 200);
    assert_eq!(server.post(b"{").0, 400);
    let skipped = String::from_utf8(pod_review("metrics-2"))
        .unwrap()
        .replace(r#""namespace":"apps""#, r#""namespace":"kube-system""#);
    assert_eq!(server.post(skipped.as_bytes()).0, 200);

    assert_eq!(server.admin_get("/healthz").unwrap(), (200, "ok\n".into()));
    assert_eq!(server.admin_get("/readyz").unwrap(), (200, "ok\n".into()));
    let (status, text) = server.admin_get("/metrics").unwrap();
    assert_eq!(status, 200);
    for sample in [
        r#"deputy_admission_requests_total{result="injected",reason="none"} 1"#,
        r#"deputy_admission_requests_total{result="bad_request",reason="none"} 1"#,
        r#"deputy_admission_requests_total{result="skipped",reason="system_namespace"} 1"#,
        r#"deputy_admission_duration_seconds_count 3"#,
        r#"deputy_admission_duration_seconds_bucket{le="0.0001"}"#,
        r#"deputy_admission_duration_seconds_bucket{le="0.0005"}"#,
        r#"deputy_tls_reloads_total{result="loaded"} 1"#,
        r#"deputy_build_info{version=""#,
    ] {
        assert!(text.contains(sample), "missing {sample} in\n{text}");
    }
    let not_after = server
        .metric("deputy_tls_certificate_not_after_seconds")
        .unwrap();
    assert!(
        not_after > 4.0e9,
        "rcgen's default notAfter is year 4096: {not_after}"
    );
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(line.starts_with("deputy_"), "{line}");
    }
    // The TLS port does not serve them.
    let (status, _) = server
        .client()
        .get(server.url("/metrics"))
        .call()
        .map(|r| (r.status().as_u16(), ()))
        .unwrap();
    assert_eq!(status, 404);
}

#[test]
fn sigterm_turns_readiness_false_lets_in_flight_requests_finish_and_exits_within_5s() {
    let (ca, _certs, mut server) = started();
    // An idle keep-alive connection, and a request whose body is half sent.
    let idle = server.client();
    assert_eq!(server.post_with(&idle, &pod_review("idle")).unwrap().0, 200);
    let body = pod_review("in-flight");
    let mut tls = tls_connect(server.addr, &ca.der);
    write_all(
        &mut tls,
        format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    write_all(&mut tls, &body[..body.len() / 2]);
    // And one that will never finish its body: it must not hold the exit past the deadline.
    let mut stuck = tls_connect(server.addr, &ca.der);
    write_all(
        &mut stuck,
        format!(
            "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    write_all(&mut stuck, &body[..10]);

    let signalled = Instant::now();
    server.sigterm();
    let not_ready = poll(Duration::from_secs(3), || {
        (server.admin_get("/readyz").map(|r| r.0) == Some(503)).then_some(())
    });
    assert!(not_ready.is_some(), "readiness turns false");
    write_all(&mut tls, &body[body.len() / 2..]);
    let (response, _) = read_until_closed(&mut tls, Duration::from_secs(5));
    assert_eq!(
        status_of(&response),
        Some(200),
        "{}",
        String::from_utf8_lossy(&response)
    );
    assert!(String::from_utf8_lossy(&response).contains("in-flight"));

    let status = server.wait_exit(Duration::from_secs(10)).expect("exits");
    let took = signalled.elapsed();
    eprintln!("exited {took:?} after SIGTERM: {status:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(status.success(), "{status:?}");
}

#[test]
fn http2_requests_multiplexed_on_one_connection_are_answered_like_the_api_server_expects() {
    // The API server's webhook client speaks HTTP/2 when ALPN offers it.
    let (ca, _certs, server) = started();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut config = (*client_config(&ca.der)).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = connector.connect(name, tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (client, connection) = h2::client::handshake(tls).await.unwrap();
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut pending = Vec::new();
        for i in 0..5 {
            let mut client = client.clone().ready().await.unwrap();
            let uid = format!("h2-{i}");
            let request = http02::Request::post("https://localhost/mutate")
                .header("content-type", "application/json")
                .body(())
                .unwrap();
            let (response, mut stream) = client.send_request(request, false).unwrap();
            stream
                .send_data(bytes::Bytes::from(pod_review(&uid)), true)
                .unwrap();
            pending.push((uid, response));
        }
        for (uid, response) in pending {
            let response = response.await.unwrap();
            assert_eq!(response.status(), 200);
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            while let Some(chunk) = body.data().await {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
                bytes.extend_from_slice(&chunk);
            }
            let review: Value = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(review["response"]["uid"], uid.as_str());
            assert_eq!(review["response"]["patchType"], "JSONPatch");
        }
    });
}

/// The first answer on a new connection is not held back: without `TCP_NODELAY` on the accepted
/// socket it waits behind the TLS session tickets for the client's delayed ACK (about 40 ms), on
/// every connection a rollout or an API server restart opens. The median of 20 fresh connections
/// must stay far below that stall; a loaded machine may slow a few, not most.
#[test]
fn the_first_answer_on_a_new_connection_is_not_delayed() {
    let (_ca, _certs, server) = started();
    let review = pod_review("first-on-new-connection");
    let mut request = format!(
        "POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        review.len()
    )
    .into_bytes();
    request.extend_from_slice(&review);
    let mut firsts: Vec<Duration> = (0..20)
        .map(|_| {
            let mut stream = server.tls_connect();
            stream.sock.set_nodelay(true).unwrap();
            let sent = Instant::now();
            write_all(&mut stream, &request);
            let response = read_one_response(&mut stream);
            let took = sent.elapsed();
            assert_eq!(
                status_of(&response),
                Some(200),
                "{}",
                String::from_utf8_lossy(&response)
            );
            took
        })
        .collect();
    firsts.sort();
    let median = firsts[firsts.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "first answers on new connections: median {median:?}, all {firsts:?}"
    );
}

/// The same over HTTP/2, as the API server's client speaks it: the first answer on each new
/// connection (after the TLS and HTTP/2 handshakes) must not wait behind a delayed ACK.
#[test]
fn the_first_http2_answer_on_a_new_connection_is_not_delayed() {
    let (ca, _certs, server) = started();
    let review = bytes::Bytes::from(pod_review("first-h2-on-new-connection"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut config = (*client_config(&ca.der)).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut firsts: Vec<Duration> = (0..20)
        .map(|_| {
            runtime.block_on(async {
                let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let tls = connector.connect(name, tcp).await.unwrap();
                let (client, connection) = h2::client::handshake(tls).await.unwrap();
                let driver = tokio::spawn(async move {
                    let _ = connection.await;
                });
                let mut client = client.ready().await.unwrap();
                let request = http02::Request::post("https://localhost/mutate")
                    .header("content-type", "application/json")
                    .body(())
                    .unwrap();
                let sent = Instant::now();
                let (response, mut stream) = client.send_request(request, false).unwrap();
                stream.send_data(review.clone(), true).unwrap();
                let response = response.await.unwrap();
                assert_eq!(response.status(), 200);
                let mut body = response.into_body();
                while let Some(chunk) = body.data().await {
                    let chunk = chunk.unwrap();
                    let _ = body.flow_control().release_capacity(chunk.len());
                }
                let took = sent.elapsed();
                drop(client);
                driver.abort();
                took
            })
        })
        .collect();
    firsts.sort();
    let median = firsts[firsts.len() / 2];
    assert!(
        median < Duration::from_millis(20),
        "first HTTP/2 answers on new connections: median {median:?}, all {firsts:?}"
    );
}

/// Reads one HTTP/1.1 response with a `Content-Length` body.
fn read_one_response(stream: &mut impl std::io::Read) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = stream.read(&mut buf).expect("read the response");
        assert!(n > 0, "closed before a whole response");
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some(head_end) = text.find("\r\n\r\n") {
            let length = text[..head_end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if out.len() >= head_end + 4 + length {
                return out;
            }
        }
    }
}
