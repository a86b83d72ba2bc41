//! The library's server on bad input: stale sockets at bind, unusable directories, unknown and
//! over-long requests, and idle clients that must not block the accept loop.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deputy_agent::{RegisterError, Terminator};

use crate::common::*;

fn register_here(
    dir: &std::path::Path,
    calls: &Arc<AtomicUsize>,
) -> Result<Terminator, RegisterError> {
    let calls = Arc::clone(calls);
    Terminator::builder()
        .ipc_dir(dir)
        .set_entrypoint(false)
        .register(move || {
            calls.fetch_add(1, Ordering::SeqCst);
        })
}

fn reply(stream: &mut UnixStream) -> String {
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut buf = [0u8; 128];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn a_stale_socket_is_replaced_but_a_foreign_file_is_not() {
    let dir = ipc_dir();
    let path = dir
        .path()
        .join(format!("graceful-terminator.{}.socket", std::process::id()));
    drop(UnixListener::bind(&path).unwrap()); // left by a previous run: nobody listens
    let calls = Arc::new(AtomicUsize::new(0));
    let terminator = register_here(dir.path(), &calls).expect("stale socket replaced");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    drop(terminator);
    assert!(!path.exists(), "the guard removes its socket");

    std::fs::write(&path, "not a socket").unwrap();
    let err = register_here(dir.path(), &calls).unwrap_err();
    assert!(err.to_string().contains("not a socket"), "{err}");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        "not a socket",
        "nothing is lost"
    );
}

#[test]
fn a_missing_directory_is_created_0700_and_an_unusable_one_names_the_fix() {
    let dir = ipc_dir();
    let nested = dir.path().join("a/b");
    let calls = Arc::new(AtomicUsize::new(0));
    drop(register_here(&nested, &calls).expect("created"));
    assert_eq!(
        std::fs::metadata(&nested).unwrap().permissions().mode() & 0o777,
        0o700
    );

    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = register_here(&file.join("ipc"), &calls)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("DEPUTY_IPC_DIR") && err.contains("emptyDir"),
        "{err}"
    );
}

#[test]
fn unknown_and_overlong_requests_get_error_lines_and_idle_clients_block_nothing() {
    let dir = ipc_dir();
    let calls = Arc::new(AtomicUsize::new(0));
    let terminator = register_here(dir.path(), &calls).unwrap();
    let path = terminator.socket_path().to_owned();

    let _idle = UnixStream::connect(&path).unwrap(); // connects and says nothing

    let mut unknown = UnixStream::connect(&path).unwrap();
    unknown.write_all(b"kill -9\n").unwrap();
    assert_eq!(reply(&mut unknown), "error unknown request\n");

    let mut long = UnixStream::connect(&path).unwrap();
    long.write_all(&[b'x'; 100]).unwrap();
    assert!(reply(&mut long).starts_with("error request too long"));
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    let mut ok = UnixStream::connect(&path).unwrap();
    ok.write_all(b"terminate\n").unwrap();
    assert_eq!(reply(&mut ok), "ok\n");
    poll_until(DEADLINE, || {
        (calls.load(Ordering::SeqCst) == 1).then_some(())
    })
    .expect("callback ran");
    let mut again = UnixStream::connect(&path).unwrap();
    again.write_all(b"terminate\n").unwrap();
    assert_eq!(reply(&mut again), "ok\n");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the callback runs once");

    // notify_exit tells both waiting clients, then returns once they disconnect.
    let waiter = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = ok.read_to_string(&mut text);
        text
    });
    terminator.notify_exit(7);
    assert_eq!(waiter.join().unwrap(), "exited 7\n");
    assert_eq!(reply(&mut again), "exited 7\n");
}

#[test]
fn run_keeps_serving_while_an_idle_client_hangs_around() {
    let dir = ipc_dir();
    let mut command = std::process::Command::new(agent());
    command
        .args([
            "run",
            "--",
            "sh",
            "-c",
            "trap 'exit 0' TERM; echo started; while :; do sleep 0.05 & wait $!; done",
        ])
        .env("DEPUTY_IPC_DIR", dir.path());
    let mut run = Proc::spawn(command);
    run.wait_for_line("started");
    let socket = dir
        .path()
        .join(format!("graceful-terminator.{}.socket", run.pid()));
    let _idle = UnixStream::connect(&socket).unwrap();
    let mut unknown = UnixStream::connect(&socket).unwrap();
    unknown.write_all(b"frobnicate\n").unwrap();
    assert_eq!(reply(&mut unknown), "error unknown request\n");
    let (code, out) = agent_output(dir.path(), &["terminate", "--timeout", "10s"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(run.wait_exit(DEADLINE), 0);
}
