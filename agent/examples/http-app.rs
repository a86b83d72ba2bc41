//! An HTTP service that shuts down as a well-written server does: it stops accepting, finishes
//! the requests in flight and closes idle keep-alive connections, then exits 0. The shutdown
//! starts on a terminate request (through `Deputy`, the library's way) or, with
//! `--on sigterm`, on SIGTERM (what most teams write). The e2e suite counts the requests lost
//! around its termination; `make demo` uses it too.
//!
//! ```text
//! http-app [--listen 0.0.0.0:8080] [--on terminate|sigterm] [--latency 5ms]
//! ```
//!
//! Every answer is `200 ok <hostname>` (the Pod's name), after `--latency`; `/healthz` answers at
//! once.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::mpsc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use deputy_agent::Deputy;

/// How long in-flight requests may take to finish once the shutdown started.
const FINISH_WITHIN: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq)]
enum StopOn {
    Terminate,
    Sigterm,
}

fn main() {
    let mut listen: SocketAddr = "0.0.0.0:8080".parse().expect("a valid default");
    let mut stop_on = StopOn::Terminate;
    let mut latency = Duration::from_millis(5);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_else(|| usage(&arg));
        match arg.as_str() {
            "--listen" => listen = value.parse().unwrap_or_else(|_| usage(&arg)),
            "--on" if value == "terminate" => stop_on = StopOn::Terminate,
            "--on" if value == "sigterm" => stop_on = StopOn::Sigterm,
            "--latency" => {
                latency = humantime::parse_duration(&value).unwrap_or_else(|_| usage(&arg))
            }
            _ => usage(&arg),
        }
    }
    let name = std::fs::read_to_string("/etc/hostname")
        .map(|n| n.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());

    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    // With Deputy, the terminate request runs the handler: it starts the shutdown and returns
    // once the server has finished; Deputy then exits 0.
    let _registration = (stop_on == StopOn::Terminate).then(|| {
        let stop = std::sync::Mutex::new(Some(stop_tx));
        let deputy = Deputy::builder()
            .shutdown_timeout(FINISH_WITHIN + Duration::from_secs(1))
            .shutdown_handler(move || {
                if let Some(stop) = stop.lock().expect("not poisoned").take() {
                    let _ = stop.send(());
                }
                done_rx
                    .recv()
                    .map_err(|_| "the server stopped unexpectedly".into())
            })
            .build();
        deputy.readied();
        deputy.graceful_terminator().unwrap_or_else(|err| {
            eprintln!("http-app: {err}");
            std::process::exit(1)
        })
    });

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(listen).await.unwrap_or_else(|err| {
            eprintln!("http-app: cannot listen on {listen}: {err}");
            std::process::exit(1)
        });
        say(format_args!(
            "listening on {} (pid {}, stops on {})",
            listener.local_addr().expect("bound"),
            std::process::id(),
            if stop_on == StopOn::Terminate {
                "a terminate request"
            } else {
                "SIGTERM"
            }
        ));
        let stop = async move {
            match stop_on {
                StopOn::Terminate => {
                    let _ = stop_rx.await;
                }
                StopOn::Sigterm => {
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .expect("a SIGTERM handler");
                    term.recv().await;
                }
            }
        };
        serve(listener, name, latency, stop).await;
    });
    say("stopped: every request answered, every connection closed");
    let _ = done_tx.send(());
    if stop_on == StopOn::Sigterm {
        std::process::exit(0);
    }
    // Deputy exits the process once the handler returns.
    loop {
        std::thread::park();
    }
}

/// Serves until `stop`, then stops accepting, lets requests in flight finish and closes idle
/// keep-alive connections (hyper's graceful shutdown).
async fn serve(
    listener: TcpListener,
    name: String,
    latency: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .clone();
    let body = Bytes::from(format!("ok {name}\n"));
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let body = body.clone();
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let body = body.clone();
                    async move {
                        if request.uri().path() != "/healthz" {
                            tokio::time::sleep(latency).await;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(body)))
                    }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut stop => break,
        }
    }
    drop(listener);
    say("shutting down: no longer accepting; finishing requests in flight");
    if tokio::time::timeout(FINISH_WITHIN, graceful.shutdown())
        .await
        .is_err()
    {
        say(format_args!(
            "connections still open after {FINISH_WITHIN:?}"
        ));
    }
}

fn say(message: impl std::fmt::Display) {
    println!("http-app: {message}");
}

fn usage(arg: &str) -> ! {
    eprintln!(
        "http-app: bad argument {arg:?}\nusage: http-app [--listen ADDR] [--on terminate|sigterm] [--latency DURATION]"
    );
    std::process::exit(2)
}
