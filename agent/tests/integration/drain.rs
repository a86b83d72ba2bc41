//! `deputy-agent terminate --drain`: the drain phase in a network namespace of its own (so no
//! other traffic of the machine reaches it), against real TCP connections over loopback, with
//! negative controls: no traffic, and traffic in another namespace, must not hold the drain.

use std::net::{TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::*;

/// Runs `test` on a thread moved into a new network namespace with loopback up. Threads and
/// processes it starts inherit the namespace; it goes away when they are gone.
fn in_new_netns<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        // SAFETY: unshare only changes the calling thread's namespaces.
        let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(
            rc,
            0,
            "unshare(CLONE_NEWNET): {}",
            std::io::Error::last_os_error()
        );
        loopback_up();
        test()
    })
    .join()
    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// `ip link set lo up`, by ioctl (a new namespace's loopback starts down).
fn loopback_up() {
    // SAFETY: a plain socket and two ioctls on a zeroed, NUL-terminated ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        assert_eq!(libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req), 0);
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        let rc = libc::ioctl(fd, libc::SIOCSIFFLAGS, &mut req);
        let err = std::io::Error::last_os_error();
        libc::close(fd);
        assert_eq!(rc, 0, "SIOCSIFFLAGS lo up: {err}");
    }
}

/// A listener that accepts and drops every connection, on its own thread, until `stop`.
fn accept_and_drop(stop: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((conn, _)) => drop(conn),
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    addr
}

/// Opens and at once closes a connection every `every` for `for_how_long`: each lives for
/// well under the agent's poll interval, so only a counter (not a socket table) sees them.
fn short_connections(addr: std::net::SocketAddr, every: Duration, for_how_long: Duration) -> u32 {
    let started = Instant::now();
    let mut made = 0;
    while started.elapsed() < for_how_long {
        drop(TcpStream::connect(addr).expect("connect"));
        made += 1;
        std::thread::sleep(every);
    }
    made
}

/// `deputy-agent terminate ARGS` (split at spaces) started in the background (its stderr collected with its stdout),
/// once it has read its first count: connections made after this are ones it must see.
fn spawn_terminate(dir: &std::path::Path, args: &str) -> (Proc, Instant) {
    let mut command = Command::new("sh");
    command
        .args(["-c", "exec \"$0\" terminate \"$@\" 2>&1", agent()])
        .args(args.split_whitespace())
        .env("DEPUTY_IPC_DIR", dir);
    let started = Instant::now();
    let agent = Proc::spawn(command);
    if args.contains("--drain") {
        agent.wait_for_line("drain");
    }
    (agent, started)
}

/// Waits for the agent: (exit code, its log, time since it started).
fn finish(mut agent: Proc, started: Instant) -> (i32, String, Duration) {
    let code = agent.wait_exit(2 * DEADLINE);
    let elapsed = started.elapsed();
    (code, agent.all_lines().join("\n"), elapsed)
}

/// The number in "N new inbound connection(s)" of the drain's summary line.
fn counted(log: &str) -> u64 {
    let words: Vec<&str> = log.split_whitespace().collect();
    words
        .windows(3)
        .filter(|w| w[1] == "new" && w[2] == "inbound")
        .find_map(|w| w[0].parse().ok())
        .unwrap_or_else(|| panic!("no connection count in {log}"))
}

#[test]
fn the_adaptive_drain_waits_while_short_connections_arrive_then_relays_once_quiet() {
    require!("root (network namespaces)" => is_root());
    in_new_netns(|| {
        let dir = ipc_dir();
        let mut app = start_app(dir.path(), &[]);
        let stop = Arc::new(AtomicBool::new(false));
        let addr = accept_and_drop(Arc::clone(&stop));
        let (child, started) =
            spawn_terminate(dir.path(), "--timeout 20s --drain 10s --drain-quiet 700ms");
        let made = short_connections(addr, Duration::from_millis(100), Duration::from_secs(2));
        let (code, log, elapsed) = finish(child, started);
        stop.store(true, Ordering::SeqCst);
        assert_eq!(code, 0, "{log}");
        assert!(
            log.contains("no new inbound connection for the quiet period"),
            "{log}"
        );
        // Held for the 2 s of traffic, then the quiet period; far from the 10 s maximum.
        assert!(elapsed >= Duration::from_millis(2500), "{elapsed:?}\n{log}");
        assert!(elapsed < Duration::from_secs(8), "{elapsed:?}\n{log}");
        let seen = counted(&log);
        assert!(
            seen >= u64::from(made),
            "saw {seen} of the {made} short connections:\n{log}"
        );
        // The relay followed the drain, and the drain's lines reached the app's stdout.
        assert_eq!(app.wait_exit(DEADLINE), 0);
        app.wait_for_line("deputy-agent terminate: draining for up to 10s");
        app.wait_for_line("deputy-agent terminate: drained for");
    });
}

#[test]
fn the_adaptive_drain_is_not_held_by_silence_nor_by_another_namespaces_traffic() {
    require!("root (network namespaces)" => is_root());
    // Traffic in the test's own namespace, which the agent's namespace must not see.
    let stop_listener = Arc::new(AtomicBool::new(false));
    let outside = accept_and_drop(Arc::clone(&stop_listener));
    let stop = Arc::new(AtomicBool::new(false));
    let noise = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let mut made = 0;
            while !stop.load(Ordering::SeqCst) {
                made += short_connections(
                    outside,
                    Duration::from_millis(50),
                    Duration::from_millis(200),
                );
            }
            made
        })
    };
    let (code, log, elapsed) = in_new_netns(|| {
        let dir = ipc_dir();
        let (child, started) =
            spawn_terminate(dir.path(), "--timeout 20s --drain 10s --drain-quiet 500ms");
        finish(child, started)
    });
    stop.store(true, Ordering::SeqCst);
    let made = noise.join().unwrap();
    stop_listener.store(true, Ordering::SeqCst);
    assert!(made > 0, "the noise ran");
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("no new inbound connection for the quiet period"),
        "{log}"
    );
    assert_eq!(counted(&log), 0, "{log}");
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}\n{log}");
    // Nothing was registered: the drain still ran, then Kubernetes' SIGTERM would follow.
    assert!(log.contains("nothing to do"), "{log}");
}

#[test]
fn connections_until_the_maximum_hold_the_adaptive_drain_to_it() {
    require!("root (network namespaces)" => is_root());
    in_new_netns(|| {
        let dir = ipc_dir();
        let stop = Arc::new(AtomicBool::new(false));
        let addr = accept_and_drop(Arc::clone(&stop));
        let (child, started) = spawn_terminate(
            dir.path(),
            "--timeout 20s --drain 1500ms --drain-quiet 400ms",
        );
        short_connections(addr, Duration::from_millis(50), Duration::from_millis(2500));
        let (code, log, elapsed) = finish(child, started);
        stop.store(true, Ordering::SeqCst);
        assert_eq!(code, 0, "{log}");
        assert!(log.contains("kept arriving until the maximum"), "{log}");
        assert!(elapsed >= Duration::from_millis(1500), "{elapsed:?}");
        assert!(counted(&log) >= 10, "{log}");
    });
}

#[test]
fn during_a_fixed_drain_the_app_stays_ready_and_then_runs_its_handler() {
    require!("root (network namespaces)" => is_root());
    in_new_netns(|| {
        let dir = ipc_dir();
        let mut app = start_app(dir.path(), &["--handler-sleep", "300ms"]);
        let addr = health_addr(&app);
        poll_until(DEADLINE, || {
            (http_get(&addr, "/health/ready") == 200).then_some(())
        })
        .expect("the app reports ready");
        let (child, started) = spawn_terminate(dir.path(), "--timeout 20s --drain 1s");
        let mut probes = 0;
        while started.elapsed() < Duration::from_millis(800) {
            assert_eq!(
                http_get(&addr, "/health/ready"),
                200,
                "ready while draining"
            );
            assert_eq!(http_get(&addr, "/health/live"), 200, "live while draining");
            probes += 1;
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            app.count("shutdown handler ran") == 0,
            "the handler waits for the drain"
        );
        let (code, log, elapsed) = finish(child, started);
        assert_eq!(code, 0, "{log}");
        assert!(
            log.contains("drained for 1.0s (fixed)") || log.contains("drained for 1s (fixed)"),
            "{log}"
        );
        // A fixed drain counts what it saw (the probes), though it does not stop for quiet.
        assert!(
            counted(&log) >= 2 * probes,
            "{probes} rounds of probes:\n{log}"
        );
        assert!(
            elapsed >= Duration::from_millis(1300),
            "drain, then the 300 ms handler"
        );
        app.wait_for_line("shutdown handler ran");
        assert_eq!(app.wait_exit(DEADLINE), 0);
    });
}

#[test]
fn a_drain_longer_than_the_deadline_allows_is_shortened_and_the_hook_keeps_its_deadline() {
    let dir = ipc_dir();
    let mut app = start_app(dir.path(), &[]);
    let (child, started) = spawn_terminate(dir.path(), "--timeout 2s --drain 30s");
    let (code, log, elapsed) = finish(child, started);
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("shortened to 1s: the relay keeps 1s of the 2s deadline"),
        "{log}"
    );
    assert!(elapsed < Duration::from_secs(2), "{elapsed:?}\n{log}");
    assert_eq!(app.wait_exit(DEADLINE), 0);
}
