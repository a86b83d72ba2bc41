//! Stable-toolchain smoke of the protocol fuzz target (agent/fuzz, nightly), against the
//! library's real server over its real socket: any bytes, in any chunks, get the answer the
//! protocol gives them (`ok` to a terminate line, `error unknown request` to another line,
//! `error request too long` past 64 bytes without a line break, nothing to a peer that leaves
//! mid-line); the callback runs only for a terminate; the server keeps serving throughout. The
//! same inputs, terminate lines left out, go to `deputy-agent run`'s own server, which must answer
//! alike without signalling its child.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deputy_agent::Terminator;
use proptest::prelude::*;

use crate::common::*;

/// What the server must answer to `data` (sent whole, then the write side closed).
fn expected(data: &[u8]) -> &'static str {
    match data.iter().position(|&b| b == b'\n') {
        Some(end) if end < 64 => {
            let mut line = &data[..end];
            while let [rest @ .., b'\r' | b' ' | b'\n'] = line {
                line = rest;
            }
            if line == b"terminate" {
                "ok\n"
            } else {
                "error unknown request\n"
            }
        }
        _ if data.len() >= 64 => "error request too long\n",
        _ => "",
    }
}

fn request() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let start = prop::sample::select(vec![
        &b"terminate"[..],
        b"terminate\r",
        b"terminate  ",
        b"TERMINATE",
        b"terminat",
        b"ok",
        b"",
    ]);
    (
        start,
        prop::collection::vec(any::<u8>(), 0..90),
        any::<bool>(),
        prop::collection::vec(1usize..40, 0..3),
    )
        .prop_map(|(start, tail, newline, cuts)| {
            let mut data = start.to_vec();
            if newline {
                data.push(b'\n');
            }
            data.extend(tail);
            (data, cuts)
        })
}

/// Sends `data` to the server at `socket` in pieces cut after `cuts` bytes, closes the write
/// side, and returns what came back (at most the first `want` bytes' worth of reads, at least one).
fn answer(socket: &std::path::Path, data: &[u8], cuts: &[usize], want: usize) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    let mut sent: usize = 0;
    for cut in cuts.iter().chain(std::iter::once(&usize::MAX)) {
        let end = sent.saturating_add(*cut).min(data.len());
        // The server may answer and close before everything is sent.
        if stream.write_all(&data[sent..end]).is_err() {
            break;
        }
        sent = end;
    }
    let _ = stream.shutdown(std::net::Shutdown::Write);
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 128];
    // A terminate is answered `ok` and held (for `exited` later): read only that line.
    while got.len() < want.max(1) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(err) => panic!("no answer within {DEADLINE:?} to {data:?}: {err}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

#[test]
fn any_bytes_but_a_terminate_get_the_same_answers_from_deputy_agent_run() {
    let dir = ipc_dir();
    let mut command = std::process::Command::new(agent());
    command
        .args(["run", "--", "sh", "-c"])
        // Ends with its parent: a failing test must not leave it behind.
        .arg("trap 'echo child-got-sigterm; exit 0' TERM; while kill -0 $PPID; do sleep 0.05 & wait $!; done")
        .env("DEPUTY_IPC_DIR", dir.path());
    let mut run = Proc::spawn(command);
    let socket = dir
        .path()
        .join(format!("graceful-terminator.{}.socket", run.pid()));
    assert!(
        poll_until(DEADLINE, || socket.exists().then_some(())).is_some(),
        "run registers"
    );
    let config = ProptestConfig {
        cases: 200,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |((data, cuts) in request())| {
        let want = expected(&data);
        prop_assume!(want != "ok\n");
        let got = answer(&socket, &data, &cuts, want.len());
        prop_assert_eq!(got.as_str(), want, "for {:?}", data);
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(run.running(), "run kept serving");
    assert_eq!(
        run.count("child-got-sigterm"),
        0,
        "no input reached the child as a signal"
    );
    // Negative control: a terminate line does.
    assert_eq!(answer(&socket, b"terminate\n", &[], 3), "ok\n");
    run.wait_for_line("child-got-sigterm");
    assert_eq!(run.wait_exit(DEADLINE), 0);
}

#[test]
fn any_bytes_get_the_protocols_answer_from_the_real_server() {
    let dir = ipc_dir();
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let terminator = Terminator::builder()
        .ipc_dir(dir.path())
        .set_entrypoint(false)
        .register(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    let socket = terminator.socket_path().to_path_buf();
    let accepted = AtomicUsize::new(0);
    let config = ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |((data, cuts) in request())| {
        let want = expected(&data);
        let got = answer(&socket, &data, &cuts, want.len());
        prop_assert_eq!(got.as_str(), want, "for {:?}", data);
        if want == "ok\n" {
            accepted.fetch_add(1, Ordering::SeqCst);
        } else {
            // None before the first terminate, once after it (it may still be starting).
            let at_most = usize::from(accepted.load(Ordering::SeqCst) > 0);
            prop_assert!(calls.load(Ordering::SeqCst) <= at_most, "the callback ran for {:?}", data);
        }
    });
    assert!(
        accepted.load(Ordering::SeqCst) > 0,
        "the strategy sent no terminate: it proved too little"
    );
    let ran = poll_until(DEADLINE, || {
        (calls.load(Ordering::SeqCst) == 1).then_some(())
    });
    assert!(
        ran.is_some(),
        "the callback ran once for the first terminate"
    );
    drop(terminator);
}
