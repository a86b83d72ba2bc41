//! Helpers for the end-to-end tests: finding the node, throwaway namespaces, polling with a
//! deadline, and running the node's own `kubectl`; the modules hold the rest (Pod builders, the
//! deployed k8s-deputy, TLS, metrics, figures).
//!
//! The node is the one `tests/e2e/harness.sh up` starts; tests find it through `KUBECONFIG`.
//! Without it a test skips loudly, unless `E2E_REQUIRED` is set (as `harness.sh test` and CI
//! do), in which case it fails.

pub mod chart;
pub mod deputy;
pub mod figures;
pub mod injection;
pub mod load;
pub mod manifests;
pub mod metrics;
pub mod pods;
pub mod termination;
pub mod test_webhook;
pub mod tls;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, PostParams};
use kube::Client;

/// The image every plain test Pod runs (busybox-static, user 65534), built by the harness.
pub const BUSYBOX: &str = "localhost/busybox:e2e";
/// The suite's own tool image (`src/bin/deputy-e2e-tool.rs`), built by `harness.sh test`.
pub const TOOL: &str = "localhost/deputy-e2e-tool:e2e";
/// The Kubernetes release of the lane the harness runs (`E2E_K8S_VERSION`, which
/// `harness.sh test` sets from `lib/lanes.sh`), e.g. `v1.37.2`.
pub fn k8s_version() -> String {
    std::env::var("E2E_K8S_VERSION")
        .expect("E2E_K8S_VERSION is not set: run the suite through harness.sh test (make e2e-test)")
}

/// The minor version of [`k8s_version`] (`37` for `v1.37.2`), for what differs between lanes.
pub fn k8s_minor() -> u32 {
    k8s_version()
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .expect("E2E_K8S_VERSION is not of the form v1.MINOR.PATCH")
}
/// The local node's network namespace (`harness.sh`), where Pod IPs are reachable.
pub const NODE_NETNS: &str = "/run/netns/k8s-deputy-e2e";
/// The deadline of most waits: far more than an idle node needs, enough for a loaded one.
pub const MINUTE: Duration = Duration::from_secs(60);

/// Connects to the node, or returns from the calling test after saying loudly why it is
/// skipped (see [`Node::from_env`]): `let node = node!("test_name");` in an `async` test.
#[macro_export]
macro_rules! node {
    ($test:literal) => {
        match $crate::Node::from_env($test).await {
            Some(node) => node,
            None => return,
        }
    };
}

/// Says loudly that a test is skipped and why, or, with `E2E_REQUIRED` set (as `harness.sh test`
/// and CI set it), fails the test instead.
pub fn skip_or_fail(msg: &str) {
    if std::env::var_os("E2E_REQUIRED").is_some() {
        panic!("{msg} (E2E_REQUIRED is set, so this fails instead of skipping)");
    }
    // Straight to the process's stderr: libtest captures eprintln!, and a skip must be seen even
    // when the test passes.
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "SKIPPED {msg}");
}

/// How many replicas of Deployment `namespace/name` are available (0 when it does not exist or
/// cannot be read).
pub async fn available_replicas(node: &Node, namespace: &str, name: &str) -> i32 {
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(node.client.clone(), namespace)
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .and_then(|d| d.status?.available_replicas)
        .unwrap_or(0)
}

/// The running node, as the tests see it.
#[derive(Clone)]
pub struct Node {
    /// A client authenticated as cluster admin.
    pub client: Client,
    /// The kubeconfig file (inside the harness's state directory).
    pub kubeconfig: PathBuf,
    /// The harness's state directory; the node's `kubectl` lives there.
    pub state_dir: PathBuf,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("kubeconfig", &self.kubeconfig)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Connects to the node named by `KUBECONFIG`, or returns `None` after saying loudly why the
    /// test is skipped. With `E2E_REQUIRED` set, a missing node is a failure instead.
    pub async fn from_env(test: &str) -> Option<Node> {
        let missing = match std::env::var_os("KUBECONFIG") {
            None => Some("KUBECONFIG is not set".to_string()),
            Some(p) if !Path::new(&p).is_file() => Some(format!(
                "KUBECONFIG={} does not exist",
                Path::new(&p).display()
            )),
            Some(_) => None,
        };
        if let Some(why) = missing {
            skip_or_fail(&format!(
                "e2e test {test}: {why}; the real node is missing (run `make e2e-test`, or \
                 `make e2e-up` and export the KUBECONFIG it prints)"
            ));
            return None;
        }
        let kubeconfig = PathBuf::from(std::env::var_os("KUBECONFIG").expect("checked above"));
        let state_dir = kubeconfig
            .parent()
            .expect("a kubeconfig file has a parent directory")
            .to_path_buf();
        let client = Client::try_default()
            .await
            .expect("a client from KUBECONFIG");
        Some(Node {
            client,
            kubeconfig,
            state_dir,
        })
    }

    /// Runs the node's own `kubectl` (same version as the node) with `args`.
    pub fn kubectl(&self, args: &[&str]) -> Result<KubectlOutput> {
        let out = Command::new(self.state_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .context("cannot run the node's kubectl")?;
        Ok(KubectlOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Runs the node's `kubectl` with `args` and `input` on its standard input (`-f -`).
    pub fn kubectl_with_input(&self, args: &[&str], input: &str) -> Result<KubectlOutput> {
        use std::io::Write;
        let mut child = Command::new(self.state_dir.join("kubectl"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("cannot run the node's kubectl")?;
        child
            .stdin
            .take()
            .context("kubectl's standard input")?
            .write_all(input.as_bytes())
            .context("cannot write to kubectl's standard input")?;
        let out = child.wait_with_output().context("kubectl did not finish")?;
        Ok(KubectlOutput {
            success: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    /// Like [`Node::kubectl`], but a non-zero exit is an error carrying stderr.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.kubectl(args)?;
        if !out.success {
            bail!("kubectl {} failed: {}", args.join(" "), out.stderr.trim());
        }
        Ok(out.stdout)
    }

    /// Creates a namespace named `e2e-<prefix>-<unique>` with `labels`; it is deleted when the
    /// returned guard drops (also when the test panics).
    pub async fn namespace(&self, prefix: &str, labels: &[(&str, &str)]) -> TestNamespace {
        let name = format!("e2e-{prefix}-{}", unique());
        let labels: serde_json::Map<String, serde_json::Value> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels}
        }))
        .expect("a valid Namespace");
        Api::<Namespace>::all(self.client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("cannot create namespace {name}: {e}"));
        // The service account controller makes `default` shortly after; Pods need it.
        let sa: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(self.client.clone(), &name);
        poll(
            "the default ServiceAccount",
            Duration::from_secs(60),
            || async { Ok(sa.get_opt("default").await?.map(|_| ())) },
        )
        .await
        .expect("the default ServiceAccount appears");
        self.adopt_namespace(&name)
    }

    /// A guard for namespace `name`, made otherwise (such as by `kubectl apply`): it is deleted,
    /// without waiting, when the guard drops.
    pub fn adopt_namespace(&self, name: &str) -> TestNamespace {
        TestNamespace {
            name: name.to_owned(),
            node: self.clone(),
        }
    }

    /// Restarts one daemon of the node (`harness.sh restart NAME SECONDS`: SIGTERM, `down` of
    /// nothing, the same flags again, waited for until it serves) and returns the harness's line
    /// (`NAME stopped in S s (by SIGTERM), down D s, serving again T s after the stop began`).
    /// Needs root, as the suite runs.
    pub fn restart_daemon(&self, name: &str, down: Duration) -> Result<String> {
        let harness = Path::new(env!("CARGO_MANIFEST_DIR")).join("harness.sh");
        let out = Command::new(&harness)
            .args(["restart", name, &format!("{:.1}", down.as_secs_f64())])
            .output()
            .with_context(|| format!("cannot run {}", harness.display()))?;
        if !out.status.success() {
            bail!(
                "harness.sh restart {name} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Directory on the host for hostPath volumes of one test, writable by any container user.
    pub fn host_dir(&self, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.state_dir.join("hostpath").join(name);
        std::fs::create_dir_all(&dir).expect("create the hostPath directory");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .expect("chmod the hostPath directory");
        dir
    }
}

/// What `kubectl` printed and whether it succeeded.
#[derive(Debug)]
pub struct KubectlOutput {
    /// Exit status 0.
    pub success: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// A namespace that is deleted (without waiting) when dropped.
#[derive(Debug)]
pub struct TestNamespace {
    /// Its name.
    pub name: String,
    node: Node,
}

impl TestNamespace {
    /// The Pod API of this namespace.
    pub fn pods(&self) -> Api<Pod> {
        Api::namespaced(self.node.client.clone(), &self.name)
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let _ = self
            .node
            .kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

/// A name part unique within this machine and run.
pub fn unique() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{:x}{:x}{}",
        std::process::id() & 0xfff,
        nanos & 0xfff,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `check` every 250 ms until it returns `Some`, failing after `deadline` with the last
/// error, if any. Never a fixed sleep: readiness is observed, not assumed.
pub async fn poll<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let start = Instant::now();
    let mut last_err = None;
    loop {
        match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if start.elapsed() > deadline {
            match last_err {
                Some(e) => {
                    bail!("timed out after {deadline:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {deadline:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits until the Pod's phase is Running and all its containers are ready.
pub async fn wait_running(pods: &Api<Pod>, name: &str, deadline: Duration) -> Result<Pod> {
    poll(&format!("Pod {name} to run"), deadline, || async {
        let pod = pods.get(name).await?;
        let status = pod.status.clone().unwrap_or_default();
        if matches!(status.phase.as_deref(), Some("Failed") | Some("Succeeded")) {
            bail!("Pod {name} ended in phase {:?}", status.phase);
        }
        let ready = status.phase.as_deref() == Some("Running")
            && status
                .container_statuses
                .unwrap_or_default()
                .iter()
                .all(|c| c.ready);
        Ok(ready.then_some(pod))
    })
    .await
}

/// Waits until the Pod no longer exists (the kubelet finished terminating it).
pub async fn wait_gone(pods: &Api<Pod>, name: &str, deadline: Duration) -> Result<()> {
    poll(&format!("Pod {name} to be gone"), deadline, || async {
        Ok(pods.get_opt(name).await?.is_none().then_some(()))
    })
    .await
}

/// Seconds since boot, as `/proc/uptime` gives them; containers read the same clock.
pub fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("/proc/uptime")
}

/// The lines of a file that containers append `LABEL <uptime>` records to.
pub fn read_events(path: &Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (label, t) = l.split_once(' ')?;
            Some((label.to_string(), t.trim().parse().ok()?))
        })
        .collect()
}
