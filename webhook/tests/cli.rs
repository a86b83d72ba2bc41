//! The command line of `deputy-webhook` as a process: exit codes, flags, environment twins and
//! the `--config` file (settings shared by `serve` and `inject`).

use std::io::Write;
use std::process::{Output, Stdio};

mod under_test;

const POD: &str = "\
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: apps
spec:
  containers:
  - name: app
    image: nginx:1.27
";

fn deputy(args: &[&str], env: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = under_test::webhook_command();
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, _) in std::env::vars() {
        if key.starts_with("DEPUTY_WEBHOOK_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().unwrap();
    // A process that rejects its arguments exits without reading: a broken pipe is fine.
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, content: &str) -> Self {
        let path = std::env::temp_dir().join(format!("deputy-cli-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn serve_without_an_agent_image_exits_2_naming_the_flag() {
    let out = deputy(
        &[
            "serve",
            "--tls-cert",
            "/nonexistent/tls.crt",
            "--tls-key",
            "/nonexistent/tls.key",
        ],
        &[],
        "",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--agent-image must be set"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn serve_without_tls_files_is_a_usage_error() {
    let out = deputy(&["serve", "--agent-image", "img:1"], &[], "");
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--tls-cert"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn serve_with_an_unwatchable_certificate_directory_exits_1() {
    let out = deputy(
        &[
            "serve",
            "--agent-image",
            "img:1",
            "--tls-cert",
            "/nonexistent/tls.crt",
            "--tls-key",
            "/nonexistent/tls.key",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
        "",
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("/nonexistent"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn inject_reads_standard_input_and_writes_the_injected_pod() {
    let out = deputy(&["inject", "-f", "-", "--agent-image", "img:1"], &[], POD);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("deputy-install"), "{stdout}");
    assert!(stdout.contains("img:1"), "{stdout}");
}

#[test]
fn the_agent_image_can_come_from_the_environment() {
    let out = deputy(
        &["inject", "-f", "-"],
        &[("DEPUTY_WEBHOOK_AGENT_IMAGE", "from-env:2")],
        POD,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("from-env:2"));
}

#[test]
fn config_file_settings_apply_and_flags_override_them() {
    let config = TempFile::new(
        "config.yaml",
        "agentImage: from-file:1\ninitMemoryLimit: 48Mi\nagentImagePullPolicy: IfNotPresent\n",
    );
    let out = deputy(
        &[
            "inject",
            "-f",
            "-",
            "--config",
            config.path(),
            "--agent-image",
            "from-flag:3",
        ],
        &[],
        POD,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("from-flag:3"), "{stdout}");
    assert!(!stdout.contains("from-file:1"), "the flag wins: {stdout}");
    assert!(
        stdout.contains("48Mi"),
        "the file's setting applies: {stdout}"
    );
    assert!(stdout.contains("IfNotPresent"), "{stdout}");
}

#[test]
fn a_config_file_with_an_unknown_setting_exits_2_naming_the_file() {
    let config = TempFile::new("bad.yaml", "agentImage: x\nagentImag: typo\n");
    let out = deputy(&["inject", "-f", "-", "--config", config.path()], &[], POD);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(config.path()) && stderr.contains("agentImag"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

/// `deputy-webhook inject -f - FLAGS` (split at spaces) over [`POD`].
fn inject_with(flags: &str, env: &[(&str, &str)]) -> Output {
    let args: Vec<&str> = ["inject", "-f", "-"]
        .into_iter()
        .chain(flags.split_whitespace())
        .collect();
    deputy(&args, env, POD)
}

/// The relay's arguments of an `inject` output: the YAML list items from `terminate` on.
fn relay_args(out: &Output) -> String {
    assert!(out.status.success(), "{}", text(&out.stderr));
    text(&out.stdout)
        .lines()
        .map(str::trim)
        .skip_while(|l| *l != "- terminate")
        .take_while(|l| l.starts_with("- "))
        .map(|l| l[2..].to_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn drain_defaults_come_from_flags_environment_and_config_file() {
    let relay = relay_args(&inject_with("--agent-image i:1", &[]));
    assert!(relay.ends_with("--drain 15s --drain-quiet 3s"), "{relay}");
    let relay = relay_args(&inject_with(
        "--agent-image i:1 --drain 6s --drain-quiet 0s",
        &[],
    ));
    assert!(relay.ends_with("--timeout 28s --drain 6s"), "{relay}");
    let relay = relay_args(&inject_with(
        "--agent-image i:1",
        &[("DEPUTY_WEBHOOK_DRAIN", "0s")],
    ));
    assert!(relay.ends_with("--timeout 28s"), "{relay}");
    let config = TempFile::new(
        "drain.yaml",
        "agentImage: f:1\ndrain: 20s\ndrainQuiet: 2s\n",
    );
    let relay = relay_args(&inject_with(&format!("--config {}", config.path()), &[]));
    assert!(relay.ends_with("--drain 20s --drain-quiet 2s"), "{relay}");
    // A quiet period that cannot end a drain early, or no duration at all: exit 2, named.
    for flags in ["--drain 3s --drain-quiet 5s", "--drain soon"] {
        let out = inject_with(&format!("--agent-image i:1 {flags}"), &[]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags}: {stderr}");
        assert!(stderr.contains("--drain"), "{flags}: {stderr}");
        assert!(out.stdout.is_empty());
    }
}

/// `serve --tls-secret` with everything it needs, in the flags' order of the README.
const TLS_SECRET_SERVE: [&str; 11] = [
    "serve",
    "--agent-image",
    "img:1",
    "--tls-secret",
    "tls",
    "--webhook-configuration",
    "w",
    "--service",
    "s",
    "--namespace",
    "n",
];

#[test]
fn tls_secret_flags_are_checked_before_anything_runs() {
    let cases: [(&[&str], &[&str], &str); 8] = [
        (
            &TLS_SECRET_SERVE[..7],
            &["--service", "", "--namespace", "n"],
            "--service \"\" is not a DNS label",
        ),
        (
            &TLS_SECRET_SERVE[..9],
            &["--namespace", "Bad_NS"],
            "--namespace \"Bad_NS\" is not a DNS label",
        ),
        (
            &TLS_SECRET_SERVE,
            &["--rotation-overlap", "500000000000y"],
            "at most a sixth",
        ),
        (&TLS_SECRET_SERVE[..5], &[], "--webhook-configuration"),
        (&TLS_SECRET_SERVE[..9], &[], "--namespace"),
        (
            &TLS_SECRET_SERVE,
            &["--tls-cert", "c", "--tls-key", "k"],
            "cannot be used with",
        ),
        (
            &TLS_SECRET_SERVE,
            &["--cert-validity", "400d"],
            "must not exceed --ca-validity",
        ),
        (
            &TLS_SECRET_SERVE,
            &["--cert-validity", "1h", "--rotation-overlap", "15m"],
            "at most a sixth of --cert-validity",
        ),
    ];
    for (base, extra, expected) in cases {
        let args: Vec<&str> = base.iter().chain(extra).copied().collect();
        let out = deputy(&args, &[], "");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
    }
}

#[test]
fn tls_secret_without_a_kubernetes_api_exits_1_saying_so() {
    // No in-cluster service account and a kubeconfig that does not exist.
    let listen = ["--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0"];
    let args: Vec<&str> = TLS_SECRET_SERVE.iter().chain(&listen).copied().collect();
    let out = deputy(
        &args,
        &[
            ("KUBECONFIG", "/nonexistent/kubeconfig"),
            ("KUBERNETES_SERVICE_HOST", ""),
            ("HOME", "/nonexistent"),
        ],
        "",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--tls-secret needs the Kubernetes API"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}
