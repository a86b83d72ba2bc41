//! k8s-deputy on a real kubelet: the webhook injects opted-in Pods, and deleting one runs the
//! app's own shutdown callback inside the preStop hook (after the default drain: 3 s when no
//! traffic reaches the Pod), so the Pod is gone in a few seconds of its 30 s grace period; the same shell app without k8s-deputy waits out its grace period.
//!
//! Needs the stack `scripts/e2e-deploy.sh` deploys (`make e2e-test` runs it first). Each test
//! works in namespaces of its own. Deletion times are recorded as `deletion` figures
//! (`deputy_e2e::figures`), which `harness.sh test` summarises at the end.

use std::time::Duration;

use deputy_e2e::deputy::{injected_namespace, INJECT_LABEL};
use deputy_e2e::figures;
use deputy_e2e::injection::{annotation, prestop, volume_names, STATUS_ANNOTATION};
use deputy_e2e::pods::{demo_pod, dry_run, DemoPod};
use deputy_e2e::termination::{
    delete_following_log, line_index, pod_event_reasons, seconds_between, show, termination_events,
    wait_for_log, Graceful, RELAY_ASKS, RELAY_CLEAN,
};
use deputy_e2e::{node, poll, wait_running, Node, TestNamespace, MINUTE};
use k8s_openapi::api::authentication::v1::TokenReview;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams};
use serde_json::json;
/// The grace period of every injected Pod here (the Kubernetes default).
const GRACE: Duration = Duration::from_secs(30);
/// What "far less than its grace period" means in these tests.
const FAST: Duration = Duration::from_secs(15);
/// The grace period of the contrast Pod without k8s-deputy (short, to keep CI short).
const PLAIN_GRACE: Duration = Duration::from_secs(15);
/// The contrast: the shell app under a shell that stays its parent, as `sh -c "app; ..."` does.
const PLAIN_SCRIPT: &str = "/app/shell-app.sh; echo \"sh: the app exited with $?\"";
/// Creates the Pod and returns it as stored (after every admission plugin).
async fn create(pods: &Api<Pod>, spec: DemoPod) -> Pod {
    let name = spec.name.clone();
    pods.create(&PostParams::default(), &demo_pod(spec))
        .await
        .unwrap_or_else(|e| panic!("create Pod {name}: {e}"))
}

/// Scenario 1: the stored Pod carries the whole injection, in the documented shape.
fn assert_injected(pod: &Pod, ipc_dir: &str) {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    assert_eq!(
        annotation(pod, STATUS_ANNOTATION),
        Some("injected:app"),
        "Pod {name}: status annotation"
    );
    let spec = pod.spec.as_ref().expect("a stored Pod has a spec");
    let init = spec.init_containers.as_deref().unwrap_or_default();
    let install = init.first().expect("an init container");
    assert_eq!(
        install.name, "deputy-install",
        "Pod {name}: first init container"
    );
    assert_eq!(
        install.command.as_deref().unwrap_or_default(),
        ["/deputy-agent", "install", "/deputy/bin"],
        "Pod {name}: the installer's command"
    );
    let volumes = volume_names(pod);
    assert!(
        volumes.iter().any(|v| v == "deputy-agent") && volumes.iter().any(|v| v == "deputy-ipc"),
        "Pod {name}: volumes {volumes:?}"
    );
    let app = &spec.containers[0];
    let mounts: Vec<(&str, &str)> = app
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|m| (m.name.as_str(), m.mount_path.as_str()))
        .collect();
    assert!(
        mounts.contains(&("deputy-agent", "/deputy/bin"))
            && mounts.contains(&("deputy-ipc", ipc_dir)),
        "Pod {name}: mounts {mounts:?}"
    );
    let env = app.env.as_deref().unwrap_or_default();
    let ipc_env = env.iter().find(|e| e.name == "DEPUTY_IPC_DIR");
    assert_eq!(
        ipc_env.and_then(|e| e.value.as_deref()),
        Some(ipc_dir),
        "Pod {name}: DEPUTY_IPC_DIR"
    );
    let hook = prestop(app);
    assert_eq!(
        hook.get(..2),
        Some(
            &[
                "/deputy/bin/deputy-agent".to_owned(),
                "terminate".to_owned()
            ][..]
        ),
        "Pod {name}: preStop {hook:?}"
    );
}

/// Scenario 2: the relay reached the app while the preStop hook was running (its first line
/// before the app's callback, its last line — "the app exited with status 0" — after it), the
/// container exited 0, no `FailedPreStopHook`, and the Pod was gone far inside its grace period.
async fn assert_graceful(
    node: &Node,
    ns: &TestNamespace,
    name: &str,
    callback: &str,
    g: &Graceful,
) {
    let log = show(&g.lines);
    let asks = line_index(&g.lines, RELAY_ASKS)
        .unwrap_or_else(|| panic!("{name}: the relay never asked the app:\n{log}"));
    let ran = line_index(&g.lines, callback)
        .unwrap_or_else(|| panic!("{name}: the callback {callback:?} never ran:\n{log}"));
    let done = line_index(&g.lines, RELAY_CLEAN)
        .unwrap_or_else(|| panic!("{name}: the relay never saw a clean exit:\n{log}"));
    assert!(
        asks < ran && ran < done,
        "{name}: relay asks, then the callback runs, then the relay (still the preStop) sees the exit:\n{log}"
    );
    assert_eq!(
        g.deletion.exit_code,
        Some(0),
        "{name}: container app's exit code (reason {:?}):\n{log}",
        g.deletion.reason
    );
    let events = termination_events(node, &ns.name, name)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        !events.iter().any(|r| r == "FailedPreStopHook"),
        "{name}: events {events:?}"
    );
    assert!(
        g.deletion.gone_after < FAST,
        "{name}: gone after {:?}, not far inside its {GRACE:?} grace period",
        g.deletion.gone_after
    );
    // A timeline from the kubelet's log timestamps (same host clock as ours).
    let delete_to_relay = seconds_between(g.deletion.deleted_at, g.lines[asks].at);
    let relay_to_callback = seconds_between(g.lines[asks].at, g.lines[ran].at);
    let callback_to_reported = seconds_between(g.lines[ran].at, g.lines[done].at);
    let reported_to_gone = g.deletion.gone_after.as_secs_f64()
        - seconds_between(g.deletion.deleted_at, g.lines[done].at);
    let gone = g.deletion.gone_after.as_secs_f64();
    figures::record(
        "deletion",
        &format!(
            "{name} with k8s-deputy: gone {gone:.3} s after the DELETE (grace {} s), exit 0; \
             DELETE -> relay asks {delete_to_relay:.3} s, -> callback logged {:.1} ms, \
             -> relay sees exit 0 {:.1} ms, -> Pod gone {reported_to_gone:.3} s",
            GRACE.as_secs(),
            relay_to_callback * 1e3,
            callback_to_reported * 1e3,
        ),
        json!({
            "pod": name, "deputy": true, "grace_s": GRACE.as_secs(), "gone_s": gone,
            "exit_code": 0, "delete_to_relay_s": delete_to_relay,
            "relay_to_callback_ms": relay_to_callback * 1e3,
            "callback_to_reported_ms": callback_to_reported * 1e3,
            "reported_to_gone_s": reported_to_gone,
        }),
    );
}

#[tokio::test]
async fn rust_library_app_is_injected_registers_and_shuts_down_through_its_callback_in_the_prestop()
{
    let node = node!(
        "rust_library_app_is_injected_registers_and_shuts_down_through_its_callback_in_the_prestop"
    );
    let ns = injected_namespace(&node, "deputy-rust", &[]).await;
    let pods = ns.pods();
    let stored = create(
        &pods,
        DemoPod::new("rust-app", &["/app/deputy-app"]).args(&["--handler-sleep", "100ms"]),
    )
    .await;
    assert_injected(&stored, "/deputy/ipc");
    // Scenario 4's negative control: the namespace does enforce `restricted` (Pod Security is
    // checked after mutation, so the injected Pod above passed it with our init container).
    let mut lax = demo_pod(DemoPod::new("lax", &["/app/deputy-app"]));
    lax.spec.as_mut().unwrap().containers[0]
        .security_context
        .as_mut()
        .unwrap()
        .allow_privilege_escalation = None;
    let refused = pods.create(&dry_run(), &lax).await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("violates PodSecurity \"restricted")),
        "a Pod that may escalate privileges is refused: {refused:?}"
    );
    wait_running(&pods, "rust-app", MINUTE)
        .await
        .expect("the injected Pod runs (restricted PSS, read-only root filesystem)");
    let logs = wait_for_log(&pods, "rust-app", "deputy-app: ready").await;
    assert!(
        logs.contains(
            "registered pid=1 socket=/deputy/ipc/graceful-terminator.1.socket entrypoint=true"
        ),
        "the app registered as the entrypoint in the injected IPC directory: {logs}"
    );

    let g = delete_following_log(&pods, "rust-app", MINUTE).await;
    let started = line_index(&g.lines, "deputy-app: shutdown handler started");
    let asks = line_index(&g.lines, RELAY_ASKS);
    assert!(
        asks < started,
        "the handler started after the relay asked:\n{}",
        show(&g.lines)
    );
    assert_graceful(
        &node,
        &ns,
        "rust-app",
        "deputy-app: shutdown handler ran",
        &g,
    )
    .await;
}

#[tokio::test]
async fn julia_protocol_app_wrapped_by_deputy_agent_run_runs_its_callback_in_the_prestop() {
    let node =
        node!("julia_protocol_app_wrapped_by_deputy_agent_run_runs_its_callback_in_the_prestop");
    let ns = injected_namespace(&node, "deputy-julia", &[]).await;
    let pods = ns.pods();
    // `wrap`: a K8sDeputy.jl app exits as soon as its callback has run and sends no reply. As
    // the container's PID 1 its exit makes the kernel kill the preStop hook before it returns
    // (`FailedPreStopHook`; see the next test). Under `deputy-agent run`, PID 1 outlives the
    // app and tells the hook how it exited.
    let stored = create(
        &pods,
        DemoPod::new("julia-app", &["/app/julia-like"])
            .annotation("k8s-deputy.io/entrypoint", "wrap"),
    )
    .await;
    assert_injected(&stored, "/deputy/ipc");
    let command = stored.spec.as_ref().unwrap().containers[0].command.clone();
    assert_eq!(
        command.as_deref().unwrap_or_default(),
        ["/deputy/bin/deputy-agent", "run", "--", "/app/julia-like"],
        "wrapped"
    );
    wait_running(&pods, "julia-app", MINUTE)
        .await
        .expect("runs");
    wait_for_log(&pods, "julia-app", "julia-like: registered pid=").await;

    let g = delete_following_log(&pods, "julia-app", MINUTE).await;
    assert!(
        line_index(&g.lines, "relayed terminate to registered descendant").is_some(),
        "deputy-agent run relayed the request to the app's socket:\n{}",
        show(&g.lines)
    );
    assert_graceful(
        &node,
        &ns,
        "julia-app",
        "julia-like: graceful termination callback ran",
        &g,
    )
    .await;
}

/// The negative control of the previous test and of the `FailedPreStopHook` check: the same
/// K8sDeputy.jl-protocol app as PID 1, unwrapped. Its callback runs, but its exit kills the hook.
#[tokio::test]
async fn julia_protocol_app_as_pid_1_kills_its_own_prestop_hook_so_it_must_be_wrapped() {
    let node =
        node!("julia_protocol_app_as_pid_1_kills_its_own_prestop_hook_so_it_must_be_wrapped");
    let ns = injected_namespace(&node, "deputy-julia-pid1", &[]).await;
    let pods = ns.pods();
    let stored = create(&pods, DemoPod::new("julia-pid1", &["/app/julia-like"])).await;
    assert_injected(&stored, "/deputy/ipc");
    wait_running(&pods, "julia-pid1", MINUTE)
        .await
        .expect("runs");
    wait_for_log(&pods, "julia-pid1", "julia-like: registered pid=1").await;

    let g = delete_following_log(&pods, "julia-pid1", MINUTE).await;
    let log = show(&g.lines);
    assert!(
        line_index(&g.lines, "julia-like: graceful termination callback ran").is_some(),
        "the callback ran:\n{log}"
    );
    assert!(
        line_index(&g.lines, RELAY_CLEAN).is_none(),
        "the hook was killed before it could report:\n{log}"
    );
    let events = poll(
        "a FailedPreStopHook event",
        Duration::from_secs(20),
        || async {
            let reasons = pod_event_reasons(&node, &ns.name, "julia-pid1").await?;
            Ok(reasons
                .iter()
                .any(|r| r == "FailedPreStopHook")
                .then_some(reasons))
        },
    )
    .await
    .expect("the kubelet records the killed hook as FailedPreStopHook");
    let gone = g.deletion.gone_after.as_secs_f64();
    figures::record(
        "deletion",
        &format!(
            "julia-pid1 unwrapped (negative control): gone {gone:.3} s after the DELETE, events {events:?}"
        ),
        json!({
            "pod": "julia-pid1", "deputy": true, "wrapped": false, "gone_s": gone, "events": events,
        }),
    );
}

/// Scenarios 2 and 3 side by side: the shell app with a SIGTERM trap, once under
/// `deputy-agent run` (`wrap`) in an opted-in namespace, once as `sh -c` in a namespace that
/// does not opt in. Both are deleted at the same moment.
#[tokio::test]
async fn shell_app_under_deputy_is_gone_long_before_the_same_app_without_it() {
    let node = node!("shell_app_under_deputy_is_gone_long_before_the_same_app_without_it");
    let ns = injected_namespace(&node, "deputy-shell", &[]).await;
    let plain_ns = node.namespace("deputy-shell-plain", &[]).await;
    let pods = ns.pods();
    let plain_pods = plain_ns.pods();

    let stored = create(
        &pods,
        DemoPod::new("shell-app", &["/app/shell-app.sh"])
            .annotation("k8s-deputy.io/entrypoint", "wrap"),
    )
    .await;
    assert_injected(&stored, "/deputy/ipc");
    // `sh -c "app; more"` as PID 1: the shell forks the app, waits, and as PID 1 with no
    // handler of its own ignores SIGTERM, so the app never hears about the deletion. (A bare
    // `sh -c "/app/shell-app.sh"` would not show this: busybox's sh execs a lone command, the
    // app becomes PID 1 and its own trap gets SIGTERM.) Labelled out too, to be sure.
    let plain = create(
        &plain_pods,
        DemoPod::new("shell-plain", &["/bin/sh", "-c", PLAIN_SCRIPT])
            .grace(PLAIN_GRACE)
            .label(INJECT_LABEL, "false"),
    )
    .await;
    assert_eq!(annotation(&plain, STATUS_ANNOTATION), None, "not injected");
    assert!(
        plain.spec.as_ref().unwrap().init_containers.is_none(),
        "not injected"
    );

    wait_running(&pods, "shell-app", MINUTE)
        .await
        .expect("runs");
    wait_running(&plain_pods, "shell-plain", MINUTE)
        .await
        .expect("runs");
    wait_for_log(&pods, "shell-app", "shell-app: started").await;
    wait_for_log(&plain_pods, "shell-plain", "shell-app: started").await;

    let (g, p) = tokio::join!(
        delete_following_log(&pods, "shell-app", MINUTE),
        delete_following_log(&plain_pods, "shell-plain", MINUTE),
    );
    assert!(
        line_index(&g.lines, "terminate request from PID").is_some()
            && line_index(&g.lines, "sending SIGTERM to the app").is_some(),
        "deputy-agent run turned the relay into the app's SIGTERM (the kubelet's comes later):\n{}",
        show(&g.lines)
    );
    assert_graceful(&node, &ns, "shell-app", "shell-app: clean exit", &g).await;
    let plain_log = show(&p.lines);
    assert!(
        line_index(&p.lines, "shell-app: got SIGTERM").is_none(),
        "without k8s-deputy the app never got SIGTERM:\n{plain_log}"
    );
    assert_eq!(
        p.deletion.exit_code,
        Some(137),
        "without k8s-deputy: SIGKILL at the end of the grace period (reason {:?})",
        p.deletion.reason
    );
    let waited = p.deletion.gone_after;
    assert!(
        waited >= PLAIN_GRACE - Duration::from_secs(1),
        "without k8s-deputy the Pod waits out its {PLAIN_GRACE:?} grace period; gone after {waited:?}"
    );
    // "Much longer", with room for a loaded machine: at least 5 s more (about 1.7 s against
    // 15.8 s on an idle one).
    assert!(
        waited.saturating_sub(g.deletion.gone_after) >= Duration::from_secs(5),
        "with k8s-deputy {:?}, without {waited:?}",
        g.deletion.gone_after
    );
    let (with, without) = (g.deletion.gone_after.as_secs_f64(), waited.as_secs_f64());
    figures::record(
        "deletion",
        &format!(
            "shell-plain without k8s-deputy (sh -c \"app; ...\"): gone {without:.3} s after the \
             DELETE (grace {} s), exit 137 (SIGKILL)",
            PLAIN_GRACE.as_secs()
        ),
        json!({
            "pod": "shell-plain", "deputy": false, "grace_s": PLAIN_GRACE.as_secs(), "gone_s": without,
            "exit_code": 137,
        }),
    );
    figures::record(
        "deletion",
        &format!(
            "summary: the shell app with k8s-deputy {with:.3} s of a {} s grace, without \
             {without:.3} s of a {} s grace",
            GRACE.as_secs(),
            PLAIN_GRACE.as_secs()
        ),
        json!({
            "with_deputy_s": with, "with_deputy_grace_s": GRACE.as_secs(),
            "without_s": without, "without_grace_s": PLAIN_GRACE.as_secs(),
        }),
    );
}

/// Scenario 4: the IPC directory at `/run` (`k8s-deputy.io/ipc-dir`) in an image whose `/var/run`
/// is a symlink to `/run`: the service-account token, mounted at `/var/run/secrets/...` as
/// usual, lands inside our `/run` mount and stays readable (and valid), and the relay works.
#[tokio::test]
async fn ipc_dir_at_run_keeps_the_service_account_token_under_the_var_run_symlink_readable() {
    let node =
        node!("ipc_dir_at_run_keeps_the_service_account_token_under_the_var_run_symlink_readable");
    let ns = injected_namespace(&node, "deputy-run", &[]).await;
    let pods = ns.pods();
    let stored = create(
        &pods,
        DemoPod::new("run-app", &["/app/deputy-app"]).annotation("k8s-deputy.io/ipc-dir", "/run"),
    )
    .await;
    assert_injected(&stored, "/run");
    wait_running(&pods, "run-app", MINUTE).await.expect("runs");
    let logs = wait_for_log(&pods, "run-app", "deputy-app: ready").await;
    assert!(
        logs.contains("socket=/run/graceful-terminator.1.socket"),
        "registered under /run: {logs}"
    );

    let exec = |args: &[&str]| {
        let mut all = vec!["-n", ns.name.as_str(), "exec", "run-app", "-c", "app", "--"];
        all.extend_from_slice(args);
        node.kubectl_ok(&all)
            .unwrap_or_else(|e| panic!("exec {args:?}: {e:#}"))
    };
    let symlink = exec(&["ls", "-ld", "/var/run"]);
    assert!(
        symlink.trim_end().ends_with("/var/run -> ../run"),
        "{symlink}"
    );
    let run = exec(&["ls", "-a", "/run"]);
    for entry in [
        "graceful-terminator.1.socket",
        "deputy-entrypoint.pid",
        "secrets",
    ] {
        assert!(
            run.split_whitespace().any(|e| e == entry),
            "/run holds {entry}: {run}"
        );
    }
    let token = exec(&["cat", "/var/run/secrets/kubernetes.io/serviceaccount/token"]);
    assert_eq!(token.trim().split('.').count(), 3, "a JWT: {token}");
    let review: TokenReview = serde_json::from_value(serde_json::json!({
        "spec": {"token": token.trim()}
    }))
    .unwrap();
    let review = Api::<TokenReview>::all(node.client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("TokenReview");
    let status = review.status.unwrap_or_default();
    assert_eq!(
        status.authenticated,
        Some(true),
        "the token is valid: {status:?}"
    );
    let user = status.user.and_then(|u| u.username).unwrap_or_default();
    assert_eq!(user, format!("system:serviceaccount:{}:default", ns.name));

    let g = delete_following_log(&pods, "run-app", MINUTE).await;
    assert_graceful(
        &node,
        &ns,
        "run-app",
        "deputy-app: shutdown handler ran",
        &g,
    )
    .await;
}
