//! Isolation (issue 13, part 3): each container sees only its own IPC subdirectory, so another
//! container of the Pod cannot reach an app's socket; the IPC volume is tmpfs, sized by its
//! `sizeLimit`, and what is written there is charged to the writing container's memory cgroup.

use deputy_e2e::deputy::injected_namespace;
use deputy_e2e::figures;
use deputy_e2e::injection::{annotation, STATUS_ANNOTATION};
use deputy_e2e::pods::{demo_pod, pod, DemoPod};
use deputy_e2e::{node, wait_running, KubectlOutput, Node, MINUTE};
use kube::api::{LogParams, PostParams};
use serde_json::json;

use crate::NODE;

/// Runs `command` in container `container` of the Pod, whatever its exit status.
fn exec_any(node: &Node, ns: &str, pod: &str, container: &str, command: &[&str]) -> KubectlOutput {
    let mut args = vec!["-n", ns, "exec", pod, "-c", container, "--"];
    args.extend_from_slice(command);
    node.kubectl(&args).expect("kubectl exec")
}

/// Runs `script` with busybox's sh in container `container` of the Pod; returns stdout, failing
/// on a non-zero exit.
fn exec(node: &Node, ns: &str, pod: &str, container: &str, script: &str) -> String {
    let out = exec_any(node, ns, pod, container, &["/bin/sh", "-c", script]);
    assert!(out.success, "exec {script:?} in {pod}/{container}: {out:?}");
    out.stdout
}

/// The container's `shmem` bytes (tmpfs pages charged to it) from its memory cgroup (v1 or v2).
const SHMEM: &str =
    "f=/sys/fs/cgroup/memory/memory.stat; [ -e $f ] || f=/sys/fs/cgroup/memory.stat; \
                     sed -n 's/^shmem //p' $f";

fn shmem(node: &Node, ns: &str, pod: &str) -> i64 {
    let out = exec(node, ns, pod, "app", SHMEM);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("shmem from memory.stat: {out:?}"))
}

#[tokio::test]
async fn each_container_sees_only_its_own_ipc_directory_on_a_sized_tmpfs_charged_to_it() {
    let node =
        node!("each_container_sees_only_its_own_ipc_directory_on_a_sized_tmpfs_charged_to_it");
    let _node = NODE.read().await;
    let ns = injected_namespace(&node, "faults-isolation", &[]).await;
    let pods = ns.pods();
    let mut value =
        serde_json::to_value(demo_pod(DemoPod::new("two", &["/app/deputy-app"]))).expect("JSON");
    let mut other = value["spec"]["containers"][0].clone();
    other["name"] = json!("other");
    other["command"] = json!(["/app/shell-app.sh"]);
    value["spec"]["containers"]
        .as_array_mut()
        .expect("containers")
        .push(other);
    value["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "64Mi"}});
    let stored = pods
        .create(&PostParams::default(), &pod(value))
        .await
        .expect("create the Pod");
    assert_eq!(
        annotation(&stored, STATUS_ANNOTATION),
        Some("injected:app,other")
    );
    wait_running(&pods, "two", MINUTE).await.expect("runs");
    let app_log = LogParams {
        container: Some("app".into()),
        ..LogParams::default()
    };
    deputy_e2e::poll("the app ready", MINUTE, || async {
        let text = pods.logs("two", &app_log).await?;
        Ok(text.contains("deputy-app: ready").then_some(()))
    })
    .await
    .expect("the app registers");

    // The app's socket is in its own view of the volume, and nowhere in the other container's.
    let find = "find / -path /proc -prune -o -name 'graceful-terminator*' -print 2>/dev/null; true";
    let in_app = exec(&node, &ns.name, "two", "app", find);
    let in_other = exec(&node, &ns.name, "two", "other", find);
    assert!(
        in_app.contains("/deputy/ipc/graceful-terminator.1.socket"),
        "the app's view: {in_app:?}"
    );
    assert_eq!(
        in_other.trim(),
        "",
        "the other container sees no socket at all"
    );
    let relay = exec_any(
        &node,
        &ns.name,
        "two",
        "other",
        &["/deputy/bin/deputy-agent", "terminate", "--timeout", "2s"],
    );
    assert!(
        relay.success && relay.stderr.contains("nothing to do"),
        "a relay in the other container finds nothing to ask: {relay:?}"
    );
    let still = exec(&node, &ns.name, "two", "app", "ls /deputy/ipc");
    assert!(still.contains("graceful-terminator.1.socket"), "{still}");

    // tmpfs, sized by the volume's sizeLimit (1Mi), and full beyond it.
    let mount = exec(
        &node,
        &ns.name,
        "two",
        "app",
        "grep ' /deputy/ipc ' /proc/mounts",
    );
    assert!(
        mount.starts_with("tmpfs /deputy/ipc tmpfs") && mount.contains("size=1024k"),
        "the IPC volume is a 1 MiB tmpfs: {mount:?}"
    );
    let full = exec_any(
        &node,
        &ns.name,
        "two",
        "app",
        &[
            "/bin/sh",
            "-c",
            "head -c 2097152 /dev/zero > /deputy/ipc/fill",
        ],
    );
    // busybox's head reports the ENOSPC as "standard output: I/O error".
    let kept: u64 = exec(&node, &ns.name, "two", "app", "wc -c < /deputy/ipc/fill")
        .trim()
        .parse()
        .expect("a size");
    assert!(
        !full.success && kept <= 1024 * 1024,
        "2 MiB do not fit: {kept} bytes kept, {full:?}"
    );
    exec(&node, &ns.name, "two", "app", "rm -f /deputy/ipc/fill");

    // What the app writes there is its memory: the cgroup's shmem grows by it.
    let before = shmem(&node, &ns.name, "two");
    exec(
        &node,
        &ns.name,
        "two",
        "app",
        "head -c 819200 /dev/zero > /deputy/ipc/fill",
    );
    let after = shmem(&node, &ns.name, "two");
    exec(&node, &ns.name, "two", "app", "rm -f /deputy/ipc/fill");
    let released = shmem(&node, &ns.name, "two");
    let charged = after - before;
    assert!(
        (800 * 1024..=1024 * 1024).contains(&charged) && released < after,
        "800 KiB in the IPC volume are charged to the container: shmem {before} -> {after} -> {released}"
    );
    figures::record(
        "isolation",
        &format!(
            "two containers: the app's socket visible only in its own container, a relay in the \
             other finds nothing; the IPC volume: {} ; of 2 MiB written {kept} bytes kept; 800 KiB written \
             there charged {charged} bytes to the container's memory cgroup (shmem), released \
             on removal",
            mount
                .split_whitespace()
                .take(4)
                .collect::<Vec<_>>()
                .join(" ")
        ),
        json!({"kept_of_2mib_bytes": kept, "charged_bytes": charged, "written_bytes": 819200, "mount": mount.trim()}),
    );
}

/// A process of another user in the app's own container: kept out by the socket's mode (and the
/// relay says so), and, with the mode loosened, refused by the server, which logs it.
#[tokio::test]
async fn a_process_of_another_uid_in_the_container_is_refused_and_the_refusal_is_logged() {
    let node =
        node!("a_process_of_another_uid_in_the_container_is_refused_and_the_refusal_is_logged");
    let _node = NODE.read().await;
    // Root in the container takes a namespace that does not enforce `restricted`.
    let ns = node
        .namespace(
            "faults-uid",
            &[(deputy_e2e::deputy::INJECT_LABEL, "enabled")],
        )
        .await;
    deputy_e2e::deputy::require_deputy(&node, &ns.name)
        .await
        .expect("the webhook injects here");
    let pods = ns.pods();
    // The suite's tool image as the app, under `deputy-agent run` (root, so its socket is
    // root's, mode 0600): `as-uid` and `chmod` come with it.
    let value = json!({
        "metadata": {"name": "uid", "annotations": {"k8s-deputy.io/entrypoint": "wrap"}},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "containers": [{
                "name": "app", "image": deputy_e2e::TOOL, "imagePullPolicy": "Never",
                "command": ["/bin/deputy-e2e-tool", "bind-unix", "/deputy/ipc/pong.socket"],
                "securityContext": {"runAsUser": 0, "runAsNonRoot": false},
            }],
        },
    });
    pods.create(&PostParams::default(), &pod(value))
        .await
        .expect("create the Pod");
    wait_running(&pods, "uid", MINUTE).await.expect("runs");
    let socket = "/deputy/ipc/graceful-terminator.1.socket";
    deputy_e2e::poll("deputy-agent run registered", MINUTE, || async {
        let out = exec_any(
            &node,
            &ns.name,
            "uid",
            "app",
            &[
                "/bin/deputy-e2e-tool",
                "cat",
                "/deputy/ipc/deputy-entrypoint.pid",
            ],
        );
        Ok(out.success.then_some(()))
    })
    .await
    .expect("registered");
    let relay = [
        "/bin/deputy-e2e-tool",
        "as-uid",
        "1000",
        "/deputy/bin/deputy-agent",
        "terminate",
        "--timeout",
        "2s",
    ];
    let kept_out = exec_any(&node, &ns.name, "uid", "app", &relay);
    assert!(
        !kept_out.success
            && kept_out.stderr.contains("permission denied")
            && kept_out.stderr.contains("runs as UID 1000"),
        "the socket's mode keeps UID 1000 out, and the relay says so: {kept_out:?}"
    );
    let chmod = exec_any(
        &node,
        &ns.name,
        "uid",
        "app",
        &["/bin/deputy-e2e-tool", "chmod", "666", socket],
    );
    assert!(chmod.success, "{chmod:?}");
    let refused = exec_any(&node, &ns.name, "uid", "app", &relay);
    assert!(
        !refused.success && refused.stderr.contains("forbidden: wrong UID"),
        "with the mode loosened, the server refuses UID 1000: {refused:?}"
    );
    let log = pods
        .logs("uid", &Default::default())
        .await
        .expect("the log");
    let line = log
        .lines()
        .find(|l| l.contains("running as UID 1000"))
        .unwrap_or_else(|| panic!("the refusal is in the container's log:\n{log}"));
    assert!(line.contains("refused a request from PID"), "{line}");
    let alive = exec_any(
        &node,
        &ns.name,
        "uid",
        "app",
        &[
            "/bin/deputy-e2e-tool",
            "connect-unix",
            "/deputy/ipc/pong.socket",
        ],
    );
    assert!(
        alive.success && alive.stdout.contains("pong"),
        "the app still runs: {alive:?}"
    );
    figures::record(
        "isolation",
        &format!(
            "UID 1000 in the app's container (root): kept out by the socket's mode (\"{}\"), and \
             with the mode loosened refused by the server, logged as \"{}\"; the app untouched",
            kept_out
                .stderr
                .lines()
                .find(|l| l.contains("permission denied"))
                .unwrap_or_default()
                .trim(),
            line.trim()
        ),
        json!({"kept_out": true, "refused_logged": true}),
    );
}
