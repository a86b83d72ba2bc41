//! `deputy-webhook serve`: `POST /mutate` over HTTPS (actix-web on rustls, certificate reloaded
//! by [`crate::tls`]), and a plain-HTTP admin port with `/healthz`, `/readyz` and `/metrics`.
//!
//! Edges: the handler only reads the body (bounded in size and time), hands it to
//! [`admission::review`] and turns the result into HTTP, a log line and metrics. SIGTERM (or
//! SIGINT) turns readiness false and stops gracefully within the shutdown timeout; a second
//! signal stops at once.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::{self, ContentType};
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;
use tracing::Instrument;

use crate::admission::{self, ReviewResult};
use crate::config::InjectionConfig;
use crate::metrics::{AdmissionLabels, Metrics};
use crate::readiness::{NotReady, Readiness};
use crate::selfsigned::{self, TlsSecretConfig};
use crate::tls::{self, CertResolver, PairPaths, Reloader, Serving};

/// The largest AdmissionReview body accepted: 4 MiB. etcd stores objects of at most 1.5 MiB by
/// default, so a real review of a Pod CREATE fits with room to spare; larger bodies get 413.
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// Idle keep-alive: longer than Go's `http.Transport` idle timeout (90 s), so the API server,
/// not us, closes idle connections and never sends a request on one we are closing.
pub const KEEP_ALIVE: Duration = Duration::from_secs(120);

/// The log target of the one line per admission, so that a filter can keep or drop those lines
/// alone (`--log info,deputy_webhook::admission=warn` drops the successful ones).
pub const ADMISSION_LOG: &str = "deputy_webhook::admission";

/// The validated settings of `serve`.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// HTTPS address of `POST /mutate`.
    pub listen: SocketAddr,
    /// Plain-HTTP address of `/healthz`, `/readyz`, `/metrics`.
    pub metrics_listen: SocketAddr,
    /// Where the serving certificate comes from.
    pub tls: TlsSource,
    /// What is injected.
    pub injection: InjectionConfig,
    /// Deadline for a client's TLS handshake, its request head, and (separately) its body.
    pub request_timeout: Duration,
    /// After SIGTERM, how long in-flight requests may take before connections are dropped.
    pub shutdown_timeout: Duration,
}

/// Where the serving certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// PEM files, reloaded when they change (a mounted Secret, cert-manager).
    Files(PairPaths),
    /// A Secret the webhook fills, rotates and watches through the API ([`crate::selfsigned`]).
    Secret(TlsSecretConfig),
}

/// What the handlers share.
#[derive(Debug)]
struct State {
    injection: InjectionConfig,
    metrics: Arc<Metrics>,
    /// Every reason not to be ready: `/readyz` reads only this.
    readiness: Arc<Readiness>,
    request_timeout: Duration,
}

/// Runs the server until a signal stops it.
pub fn run(config: ServeConfig) -> anyhow::Result<()> {
    tls::install_default_provider();
    actix_web::rt::System::new().block_on(serve(config))
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let ServeConfig {
        listen,
        metrics_listen,
        tls,
        injection,
        request_timeout,
        shutdown_timeout,
    } = config;
    let serving = Serving {
        resolver: Arc::new(CertResolver::default()),
        readiness: Arc::new(Readiness::new()),
        metrics: Arc::new(Metrics::new()),
    };
    let resolver = Arc::clone(&serving.resolver);
    let state = web::Data::new(State {
        injection,
        metrics: Arc::clone(&serving.metrics),
        readiness: Arc::clone(&serving.readiness),
        request_timeout,
    });
    let _reloader = match tls {
        TlsSource::Files(paths) => Some(Reloader::start(paths, serving)?),
        TlsSource::Secret(secret) => {
            selfsigned::start(secret, serving)?;
            None
        }
    };

    let listener = bind(listen, "--listen")?;
    let admin_listener = bind(metrics_listen, "--metrics-listen")?;
    let (addr, admin_addr) = (listener.local_addr()?, admin_listener.local_addr()?);

    let app_state = state.clone();
    let https = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .route("/mutate", web::post().to(mutate))
    })
    .disable_signals()
    // Whole seconds, rounded up: actix takes seconds.
    .shutdown_timeout(shutdown_timeout.as_millis().div_ceil(1000) as u64)
    .client_request_timeout(request_timeout)
    .tls_handshake_timeout(request_timeout)
    .keep_alive(KEEP_ALIVE)
    .listen_rustls_0_23(listener, tls::server_config(resolver)?)
    .context("cannot serve TLS on --listen")?
    .run();

    let admin_state = state.clone();
    let admin = HttpServer::new(move || {
        App::new()
            .app_data(admin_state.clone())
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(render_metrics))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .client_request_timeout(request_timeout)
    .listen(admin_listener)
    .context("cannot serve HTTP on --metrics-listen")?
    .run();

    tracing::info!(listen = %addr, metrics_listen = %admin_addr, "serving");
    let (https_handle, admin_handle) = (https.handle(), admin.handle());
    let admin_task = actix_web::rt::spawn(admin);
    actix_web::rt::spawn(stop_on_signal(state, https_handle));
    let served = https.await;
    admin_handle.stop(false).await;
    let _ = admin_task.await;
    tracing::info!("stopped");
    served.context("the HTTPS server failed")
}

/// Listens on `addr` with `TCP_NODELAY`, which Linux copies to every accepted socket: without
/// it, the first answer on a new TLS connection waits behind the session tickets for the
/// client's delayed ACK (about 40 ms), on every connection a rollout or an API server restart
/// opens.
fn bind(addr: SocketAddr, flag: &str) -> anyhow::Result<TcpListener> {
    let listener =
        TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr} ({flag})"))?;
    socket2::SockRef::from(&listener)
        .set_tcp_nodelay(true)
        .with_context(|| format!("cannot set TCP_NODELAY on {addr} ({flag})"))?;
    Ok(listener)
}

/// First SIGTERM/SIGINT: not ready, graceful stop; a second one: stop now.
async fn stop_on_signal(state: web::Data<State>, https: actix_web::dev::ServerHandle) {
    use actix_web::rt::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install SIGTERM/SIGINT handlers; stop with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    state.readiness.set(NotReady::Draining, true);
    tracing::info!(
        signal = name,
        "stopping: not ready, finishing in-flight requests"
    );
    tokio::select! {
        () = https.stop(true) => {}
        _ = term.recv() => { tracing::warn!("second signal: stopping now"); https.stop(false).await }
        _ = int.recv() => { tracing::warn!("second signal: stopping now"); https.stop(false).await }
    }
}

/// `POST /mutate`.
async fn mutate(req: HttpRequest, payload: web::Payload, state: web::Data<State>) -> HttpResponse {
    let span = tracing::info_span!("admission", uid = tracing::field::Empty);
    let started = Instant::now();
    async move {
        let body = match read_body(&req, payload, state.request_timeout).await {
            Ok(body) => body,
            Err((status, result, message)) => {
                return reject(&state, started, status, result, message);
            }
        };
        match admission::review(&body, &state.injection) {
            Ok((response, outcome)) => {
                tracing::Span::current().record("uid", outcome.uid.as_str());
                let reason = match &outcome.result {
                    ReviewResult::Skipped(reason) => reason.as_str(),
                    _ => "none",
                };
                let result = outcome.result.as_str();
                let elapsed = started.elapsed();
                state.metrics.admission(
                    AdmissionLabels { result, reason },
                    elapsed,
                    outcome.warnings,
                );
                tracing::info!(
                    target: ADMISSION_LOG,
                    namespace = %outcome.namespace,
                    name = %outcome.name,
                    result,
                    reason,
                    warnings = outcome.warnings,
                    dry_run = outcome.dry_run,
                    duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                    "admission"
                );
                HttpResponse::Ok()
                    .content_type(ContentType::json())
                    .body(response.to_string())
            }
            Err(bad) => reject(
                &state,
                started,
                StatusCode::BAD_REQUEST,
                "bad_request",
                bad.to_string(),
            ),
        }
    }
    .instrument(span)
    .await
}

type Rejection = (StatusCode, &'static str, String);

/// The body, at most [`MAX_BODY_BYTES`], read within `timeout`.
async fn read_body(
    req: &HttpRequest,
    payload: web::Payload,
    timeout: Duration,
) -> Result<web::Bytes, Rejection> {
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("the body exceeds the limit of {MAX_BODY_BYTES} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    match actix_web::rt::time::timeout(timeout, payload.to_bytes_limited(MAX_BODY_BYTES)).await {
        Ok(Ok(Ok(body))) => Ok(body),
        Ok(Ok(Err(err))) => Err((
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("cannot read the body: {err}"),
        )),
        Ok(Err(_limit)) => Err(too_large()),
        Err(_elapsed) => Err((
            StatusCode::REQUEST_TIMEOUT,
            "timeout",
            format!("the body did not arrive within {timeout:?}"),
        )),
    }
}

/// A request that is not an AdmissionReview we can answer: never a 5xx.
fn reject(
    state: &State,
    started: Instant,
    status: StatusCode,
    result: &'static str,
    message: String,
) -> HttpResponse {
    let elapsed = started.elapsed();
    state.metrics.admission(
        AdmissionLabels {
            result,
            reason: "none",
        },
        elapsed,
        0,
    );
    tracing::warn!(
        target: ADMISSION_LOG,
        status = status.as_u16(),
        result,
        error = %message,
        duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "admission request rejected"
    );
    let mut response = HttpResponse::build(status);
    if status != StatusCode::BAD_REQUEST {
        // The rest of an unread body would be taken for the next request.
        response.force_close();
    }
    response
        .content_type(ContentType::plaintext())
        .body(message + "\n")
}

/// `GET /healthz`: the process answers.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().body("ok\n")
}

/// `GET /readyz`: 200 when no reason not to be ready holds, else 503 naming the first.
async fn readyz(state: web::Data<State>) -> HttpResponse {
    match state.readiness.not_ready() {
        None => HttpResponse::Ok().body("ok\n"),
        Some(reason) => {
            HttpResponse::ServiceUnavailable().body(format!("{}\n", reason.explanation()))
        }
    }
}

/// `GET /metrics`.
async fn render_metrics(state: web::Data<State>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(state.metrics.render())
}
