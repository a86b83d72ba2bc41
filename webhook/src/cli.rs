//! The command line of `deputy-webhook`: every flag with its environment-variable twin, turned
//! once into validated, typed configuration ([`ServeConfig`], [`InjectionConfig`]) before
//! anything runs. Exit codes: 0 success, 1 a runtime failure, 2 a usage or configuration error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use crate::config::InjectionConfig;
use crate::selfsigned::config::{TlsSecretConfig, TlsSecretFlags};
use crate::server::{ServeConfig, TlsSource};
use crate::tls::PairPaths;

/// Mutating admission webhook that gives opted-in Pods graceful termination (k8s-deputy).
#[derive(Debug, Parser)]
#[command(name = "deputy-webhook", version)]
pub struct Args {
    /// Log format on stderr: `text` for people, `json` (one object a line) for collectors.
    #[arg(
        long,
        env = "DEPUTY_WEBHOOK_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        global = true
    )]
    log_format: LogFormat,

    /// Log filter, `tracing` EnvFilter syntax (`info`, `warn,deputy_webhook=debug`).
    #[arg(
        long,
        env = "DEPUTY_WEBHOOK_LOG",
        default_value = "info",
        global = true
    )]
    log: String,

    #[command(subcommand)]
    command: Command,
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, span fields (the admission `uid`) included.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve `POST /mutate` over HTTPS, and /healthz, /readyz, /metrics over plain HTTP.
    Serve(Box<ServeArgs>),
    /// Inject manifests offline: read YAML or JSON (Pods, workloads, Lists), write them back
    /// with every pod template mutated; warnings on stderr.
    Inject(InjectArgs),
    /// Ask the API server for a dry-run Pod opted in by label, and check that it came back
    /// injected: the whole path a Pod takes, from inside the cluster (`helm test` runs it).
    SelfTest(SelfTestArgs),
}

#[derive(Debug, clap::Args)]
struct SelfTestArgs {
    /// Where the dry-run Pod is created: a namespace labelled neither
    /// `k8s-deputy.io/inject=enabled` nor `disabled`, where the service account may create Pods.
    #[arg(long, default_value = "default")]
    namespace: String,

    /// The dry-run Pod's image (never pulled: nothing runs).
    #[arg(long, default_value = "registry.k8s.io/pause:3.10")]
    image: String,
}

#[derive(Debug, clap::Args)]
struct InjectArgs {
    /// The manifests to read, `-` for standard input.
    #[arg(short = 'f', long)]
    filename: PathBuf,

    #[command(flatten)]
    injection: InjectionArgs,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// HTTPS address of `POST /mutate` (port 0 picks a free port; the log line `serving` says
    /// which).
    #[arg(long, env = "DEPUTY_WEBHOOK_LISTEN", default_value = "0.0.0.0:8443")]
    listen: SocketAddr,

    /// Plain-HTTP address of `/healthz`, `/readyz` and `/metrics`.
    #[arg(
        long,
        env = "DEPUTY_WEBHOOK_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    metrics_listen: SocketAddr,

    /// PEM certificate chain, leaf first (e.g. a Secret volume's `tls.crt`). Reloaded when its
    /// directory changes. Give it with --tls-key, or give --tls-secret instead.
    #[arg(
        long,
        env = "DEPUTY_WEBHOOK_TLS_CERT",
        requires = "tls_key",
        required_unless_present = "tls_secret"
    )]
    tls_cert: Option<PathBuf>,

    /// PEM private key of the certificate (e.g. `tls.key`).
    #[arg(long, env = "DEPUTY_WEBHOOK_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    #[command(flatten)]
    tls_secret: TlsSecretArgs,

    /// The webhook's own namespace, never injected (set it from the downward API).
    #[arg(long, env = "DEPUTY_WEBHOOK_NAMESPACE")]
    namespace: Option<String>,

    /// Deadline for a client's TLS handshake, its request head, and its body (each).
    #[arg(
        long,
        env = "DEPUTY_WEBHOOK_REQUEST_TIMEOUT",
        default_value = "10s",
        value_parser = humantime::parse_duration
    )]
    request_timeout: Duration,

    /// After SIGTERM, how long in-flight requests may finish before connections are dropped
    /// (whole seconds, rounded up; keep it under the 5 s the process promises to exit within).
    #[arg(
        long,
        env = "DEPUTY_WEBHOOK_SHUTDOWN_TIMEOUT",
        default_value = "4s",
        value_parser = humantime::parse_duration
    )]
    shutdown_timeout: Duration,

    #[command(flatten)]
    injection: InjectionArgs,
}

/// `--tls-secret`: the certificate made, rotated and published by the webhook itself.
#[derive(Debug, clap::Args)]
struct TlsSecretArgs {
    /// Secret (in --namespace) that the webhook fills with its own CA and serving pair, rotates,
    /// and serves from, read through the Kubernetes API (instead of --tls-cert/--tls-key).
    #[arg(
        long,
        env = "DEPUTY_WEBHOOK_TLS_SECRET",
        conflicts_with_all = ["tls_cert", "tls_key"],
        requires_all = ["webhook_configuration", "service"]
    )]
    tls_secret: Option<String>,

    /// With --tls-secret: the MutatingWebhookConfiguration whose entries get the CA bundle.
    #[arg(long, env = "DEPUTY_WEBHOOK_CONFIGURATION", requires = "tls_secret")]
    webhook_configuration: Option<String>,

    /// With --tls-secret: the Service in --namespace the API server calls; the certificate is
    /// for `<service>.<namespace>.svc` (and the shorter and longer forms).
    #[arg(long, env = "DEPUTY_WEBHOOK_SERVICE", requires = "tls_secret")]
    service: Option<String>,

    /// With --tls-secret: lifetime of a new CA; a new one joins the bundle when a third is left.
    #[arg(
        long,
        env = "DEPUTY_WEBHOOK_CA_VALIDITY",
        default_value = "365d",
        value_parser = humantime::parse_duration
    )]
    ca_validity: Duration,

    /// With --tls-secret: lifetime of a serving certificate; renewed when a third is left.
    #[arg(
        long,
        env = "DEPUTY_WEBHOOK_CERT_VALIDITY",
        default_value = "30d",
        value_parser = humantime::parse_duration
    )]
    cert_validity: Duration,

    /// With --tls-secret: the least time between the steps of a CA change (new CA trusted →
    /// certificate from it served → old CA dropped), for the API server and every replica to
    /// catch up. Each replica also re-reads the Secret every third of it (2s to 60s).
    #[arg(
        long,
        env = "DEPUTY_WEBHOOK_ROTATION_OVERLAP",
        default_value = "30s",
        value_parser = humantime::parse_duration
    )]
    rotation_overlap: Duration,
}

impl TlsSecretArgs {
    /// The checked `--tls-secret` settings, or None without `--tls-secret`.
    fn into_config(self, namespace: Option<&str>) -> anyhow::Result<Option<TlsSecretConfig>> {
        let Self {
            tls_secret,
            webhook_configuration,
            service,
            ca_validity,
            cert_validity,
            rotation_overlap,
        } = self;
        let Some(secret) = tls_secret else {
            return Ok(None);
        };
        let config = TlsSecretConfig::new(TlsSecretFlags {
            secret,
            namespace: namespace.map(str::to_owned),
            webhook_configuration,
            service,
            ca_validity,
            cert_validity,
            rotation_overlap,
        })?;
        Ok(Some(config))
    }
}

/// The injection settings shared by `serve` and `inject`.
#[derive(Debug, clap::Args)]
struct InjectionArgs {
    /// YAML (or JSON) file of injection settings, camelCase keys (`agentImage`, `ipcDir`,
    /// `initMemoryLimit`, ...); the flags below override it.
    #[arg(long, env = "DEPUTY_WEBHOOK_CONFIG")]
    config: Option<PathBuf>,

    /// Image holding the static agent at `/deputy-agent`.
    #[arg(long, env = "DEPUTY_WEBHOOK_AGENT_IMAGE")]
    agent_image: Option<String>,

    /// `imagePullPolicy` of the injected init container: Always, IfNotPresent or Never.
    #[arg(long, env = "DEPUTY_WEBHOOK_AGENT_IMAGE_PULL_POLICY")]
    agent_image_pull_policy: Option<String>,

    /// The drain before the relay for Pods without `k8s-deputy.io/drain`: the app keeps serving
    /// this long (fixed), or at most this long (with --drain-quiet); 0s for none [default: 15s]
    #[arg(long, env = "DEPUTY_WEBHOOK_DRAIN", value_parser = humantime::parse_duration)]
    drain: Option<Duration>,

    /// For Pods without `k8s-deputy.io/drain-quiet`: relay as soon as no new inbound
    /// connection has reached the Pod for this long; 0s for a fixed drain [default: 3s]
    #[arg(long, env = "DEPUTY_WEBHOOK_DRAIN_QUIET", value_parser = humantime::parse_duration)]
    drain_quiet: Option<Duration>,
}

/// A usage or configuration error: exit code 2.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
struct Invalid(anyhow::Error);

impl Args {
    /// Parses the command line and the environment, runs the subcommand, and returns the exit
    /// code (errors are printed on stderr).
    pub fn parse_and_run() -> ExitCode {
        let args = Self::parse();
        match args.run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "exiting");
                eprintln!("deputy-webhook: {err:#}");
                if err.is::<Invalid>() {
                    ExitCode::from(2)
                } else {
                    ExitCode::FAILURE
                }
            }
        }
    }

    fn run(self) -> anyhow::Result<()> {
        let Self {
            log_format,
            log,
            command,
        } = self;
        init_logging(log_format, &log).map_err(Invalid)?;
        match command {
            Command::Serve(args) => crate::server::run((*args).into_config().map_err(Invalid)?),
            Command::Inject(args) => args.run(),
            Command::SelfTest(args) => {
                let injected = crate::selftest::run(&args.namespace, &args.image)?;
                println!(
                    "a dry-run Pod in namespace {} was injected: {}: {}; init containers {:?}; preStop {:?}",
                    args.namespace,
                    crate::config::keys::STATUS,
                    injected.status,
                    injected.init_containers,
                    injected.prestop
                );
                Ok(())
            }
        }
    }
}

impl ServeArgs {
    fn into_config(self) -> anyhow::Result<ServeConfig> {
        let Self {
            listen,
            metrics_listen,
            tls_cert,
            tls_key,
            tls_secret,
            namespace,
            request_timeout,
            shutdown_timeout,
            injection,
        } = self;
        let tls = match (
            tls_secret.into_config(namespace.as_deref())?,
            tls_cert,
            tls_key,
        ) {
            (Some(secret), _, _) => TlsSource::Secret(secret),
            (None, Some(cert), Some(key)) => TlsSource::Files(PairPaths { cert, key }),
            _ => anyhow::bail!("give --tls-cert and --tls-key, or --tls-secret"),
        };
        let mut injection = injection.into_config()?;
        if namespace.is_some() {
            injection.own_namespace = namespace;
        }
        injection.validate()?;
        if request_timeout.is_zero() {
            anyhow::bail!("--request-timeout must be more than 0s");
        }
        Ok(ServeConfig {
            listen,
            metrics_listen,
            tls,
            injection,
            request_timeout,
            shutdown_timeout,
        })
    }
}

impl InjectArgs {
    fn run(self) -> anyhow::Result<()> {
        let Self {
            filename,
            injection,
        } = self;
        let config = injection.into_config().map_err(Invalid)?;
        config.validate().map_err(|e| Invalid(e.into()))?;
        let input: Box<dyn std::io::Read> = if filename.as_os_str() == "-" {
            Box::new(std::io::stdin().lock())
        } else {
            let file = std::fs::File::open(&filename)
                .with_context(|| format!("cannot open -f {}", filename.display()))?;
            Box::new(std::io::BufReader::new(file))
        };
        crate::inject::run(
            input,
            std::io::stdout().lock(),
            std::io::stderr().lock(),
            &config,
        )
        .with_context(|| format!("-f {}", filename.display()))?;
        Ok(())
    }
}

impl InjectionArgs {
    /// The file's settings (or the defaults) with the flags applied; not yet validated.
    fn into_config(self) -> anyhow::Result<InjectionConfig> {
        let Self {
            config,
            agent_image,
            agent_image_pull_policy,
            drain,
            drain_quiet,
        } = self;
        let mut settings = match &config {
            Some(path) => load_config_file(path)?,
            None => InjectionConfig::default(),
        };
        if let Some(image) = agent_image {
            settings.agent_image = image;
        }
        if agent_image_pull_policy.is_some() {
            settings.agent_image_pull_policy = agent_image_pull_policy;
        }
        if let Some(drain) = drain {
            settings.drain = drain;
        }
        if let Some(quiet) = drain_quiet {
            settings.drain_quiet = (!quiet.is_zero()).then_some(quiet);
        }
        Ok(settings)
    }
}

fn load_config_file(path: &std::path::Path) -> anyhow::Result<InjectionConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --config {}", path.display()))?;
    let context = || format!("--config {}", path.display());
    let stream = deputy_yaml::parse(&text).with_context(context)?;
    let mut documents = stream
        .documents
        .iter()
        .filter(|d| **d != deputy_yaml::Node::Null);
    match (documents.next(), documents.next()) {
        (None, _) => Ok(InjectionConfig::default()),
        (Some(document), None) => serde_json::from_value(document.to_json()).with_context(context),
        (Some(_), Some(_)) => anyhow::bail!("{}: expected one YAML document", context()),
    }
}

fn init_logging(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("--log {filter:?} is not a valid filter"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, not in a file or a container log.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))
}
