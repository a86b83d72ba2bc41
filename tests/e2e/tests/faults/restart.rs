//! A container restarted under the app (its liveness probe fails; the OOM killer ends it), then
//! the Pod deleted. The IPC emptyDir outlives the container, so the new instance finds the old
//! one's entrypoint file and sockets; the test hands the old app's PID to an unrelated process
//! (a decoy that logs every signal it can catch) before the new app starts, asks a relay to
//! terminate that old PID, and then deletes the Pod: the relay must reach the new app and never
//! the decoy.

use std::time::Duration;

use deputy_e2e::deputy::injected_namespace;
use deputy_e2e::figures;
use deputy_e2e::pods::{demo_pod, pod, DemoPod};
use deputy_e2e::termination::{
    delete_following_log, line_index, show, termination_events, Graceful, RELAY_CLEAN,
};
use deputy_e2e::{node, poll, MINUTE};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::api::{Api, LogParams, PostParams};
use serde_json::json;

use crate::NODE;

/// The container's script (under `deputy-agent run`, so `sh` is PID 2 or so, never 1). The first
/// instance uses up PIDs to 40 (how many `run`'s threads take at a start varies), starts the app
/// in the background and records its PID in the IPC directory; a later
/// instance reads it (a builtin: no fork may take a PID first), forks until a decoy holds exactly
/// that PID, asks a relay to terminate the
/// old PID, then starts a new app (which gets another PID) and waits for it.
const SCRIPT: &str = r#"d=$DEPUTY_IPC_DIR
if [ -e "$d/first-app" ]; then
  read old < "$d/first-app"
  while :; do
    ( trap 'echo "decoy PID $old: got SIGTERM"' TERM; trap 'echo "decoy PID $old: got SIGINT"' INT
      trap 'echo "decoy PID $old: got SIGHUP"' HUP; trap 'echo "decoy PID $old: got SIGUSR1"' USR1
      trap 'echo "decoy PID $old: got SIGUSR2"' USR2; trap 'echo "decoy PID $old: got SIGQUIT"' QUIT
      while :; do sleep 1; done ) &
    p=$!
    [ "$p" -eq "$old" ] && break
    kill -9 "$p"; wait "$p" 2>/dev/null
    if [ "$p" -gt "$old" ]; then echo "restart: cannot place a decoy at PID $old (got $p)"; exit 3; fi
  done
  rm -f "$d/unhealthy"
  echo "restart: decoy holds PID $old, the old app's; left in the IPC directory: $(ls "$d" | tr '\n' ' ')"
  /deputy/bin/deputy-agent terminate --pid "$old" --timeout 2s
  echo "restart: the relay to the old PID exited $?"
  /app/deputy-app --handler-sleep 100ms &
  app=$!
  echo "restart: new app PID $app"
  wait "$app"
  exit $?
fi
# PIDs past what run's threads and the shell take at a start, so that a later instance always
# starts below the old app's PID and can fork its way up to it.
while :; do /bin/true & t=$!; wait "$t"; [ "$t" -ge 40 ] && break; done
/app/deputy-app $FIRST_ARGS &
echo "$!" > "$d/first-app"
echo "restart: first app PID $!"
wait "$!"
code=$?
echo "restart: the first app exited with $code"
exit "$code"
"#;

/// How the first instance ends.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Its app hangs (ignores `terminate`); a file makes the liveness probe fail.
    Liveness,
    /// Its app allocates past the container's memory limit.
    Oom,
}

fn restart_pod(name: &str, fault: Fault) -> Pod {
    let first_args = match fault {
        Fault::Liveness => "--ignore-terminate",
        Fault::Oom => "--allocate-on /deputy/ipc/oom",
    };
    let mut value = serde_json::to_value(demo_pod(
        DemoPod::new(name, &["/bin/sh", "-c", SCRIPT])
            .annotation("k8s-deputy.io/entrypoint", "wrap")
            .grace(Duration::from_secs(30)),
    ))
    .expect("a Pod is JSON");
    let app = &mut value["spec"]["containers"][0];
    app["env"] = json!([{"name": "FIRST_ARGS", "value": first_args}]);
    match fault {
        Fault::Liveness => {
            // A probe's own grace period (GA since 1.27): the hung first app is killed 3 s
            // after the probe fails, not 30. The initial delay keeps probe processes (which
            // take PIDs in the container) away from the decoy's placement.
            app["livenessProbe"] = json!({
                "exec": {"command": ["/bin/sh", "-c", "[ ! -e /deputy/ipc/unhealthy ]"]},
                "initialDelaySeconds": 2, "periodSeconds": 1, "failureThreshold": 1, "terminationGracePeriodSeconds": 3,
            });
        }
        Fault::Oom => {
            app["resources"] =
                json!({"limits": {"memory": "64Mi"}, "requests": {"memory": "64Mi"}});
        }
    }
    pod(value)
}

fn app_status(pod: &Pod) -> Option<ContainerStatus> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == "app")
        .cloned()
}

/// Waits until container `app` has restarted and its new instance is ready; returns its status.
async fn restarted(pods: &Api<Pod>, name: &str) -> ContainerStatus {
    poll(
        &format!("container app of {name} restarted and ready"),
        Duration::from_secs(90),
        || async {
            let status = app_status(&pods.get(name).await?);
            Ok(status.filter(|s| s.restart_count >= 1 && s.ready))
        },
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"))
}

async fn log(pods: &Api<Pod>, name: &str, previous: bool) -> String {
    let params = LogParams {
        previous,
        ..LogParams::default()
    };
    pods.logs(name, &params)
        .await
        .unwrap_or_else(|e| panic!("the log of {name} (previous: {previous}): {e}"))
}

/// The number after `prefix` in the first line of `log` containing it.
fn number_after(log: &str, prefix: &str) -> Option<i32> {
    let rest = &log[log.find(prefix)? + prefix.len()..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

async fn restart_then_delete(fault: Fault, name: &str, trigger: &str) {
    let node = deputy_e2e::Node::from_env(name)
        .await
        .expect("checked by the caller");
    let ns = injected_namespace(&node, "faults-restart", &[]).await;
    let pods = ns.pods();
    pods.create(&PostParams::default(), &restart_pod(name, fault))
        .await
        .unwrap_or_else(|e| panic!("create Pod {name}: {e}"));
    deputy_e2e::wait_running(&pods, name, MINUTE)
        .await
        .expect("runs");
    deputy_e2e::termination::wait_for_log(&pods, name, "deputy-app: ready").await;
    let first = log(&pods, name, false).await;
    let old = number_after(&first, "restart: first app PID ").expect("the first app's PID");
    assert_ne!(old, 1, "the app is not PID 1 under run:\n{first}");

    // The fault: the test writes the trigger file into the app's IPC directory.
    node.kubectl_ok(&[
        "-n",
        &ns.name,
        "exec",
        name,
        "-c",
        "app",
        "--",
        "/bin/sh",
        "-c",
        &format!(": > {trigger}"),
    ])
    .expect("kubectl exec touch");
    let status = restarted(&pods, name).await;
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .cloned()
        .expect("the restarted container's last state is terminated");
    let previous = log(&pods, name, true).await;
    let current = match poll("the new instance's app registered", MINUTE, || async {
        let text = log(&pods, name, false).await;
        Ok(text.contains("deputy-app: ready").then_some(text))
    })
    .await
    {
        Ok(text) => text,
        Err(e) => {
            let status = app_status(&pods.get(name).await.expect("the Pod"));
            panic!(
                "{e:#}\nthe current instance's log:\n{}\nthe previous one's:\n{previous}\nstatus: {status:?}",
                log(&pods, name, false).await,
            )
        }
    };
    match fault {
        Fault::Liveness => assert!(
            previous.contains("terminate request ignored"),
            "the liveness kill went through the relay first (the app ignored it):\n{previous}"
        ),
        Fault::Oom => {
            assert!(
                previous.contains("allocating memory until killed")
                    && previous.contains("restart: the first app exited with 137"),
                "the kernel killed the first app (SIGKILL) while it allocated:\n{previous}"
            );
        }
    }
    // The new instance found the old one's files, put a decoy at the old PID, and a relay
    // asked to terminate that PID found nothing registered (the decoy does not listen).
    let left = current
        .lines()
        .find(|l| l.contains("left in the IPC directory"))
        .unwrap_or_else(|| panic!("no decoy line:\n{current}"));
    assert!(
        left.contains(&format!("decoy holds PID {old},"))
            && left.contains(&format!("graceful-terminator.{old}.socket")),
        "the old instance's socket outlived its container, and the decoy has its PID:\n{current}"
    );
    assert!(
        current.contains("nothing to do") && current.contains("the relay to the old PID exited 0"),
        "a relay aimed at the reused PID acts on nothing:\n{current}"
    );
    let new = number_after(&current, "restart: new app PID ").expect("the new app's PID");
    assert_ne!(new, old, "{current}");

    let g: Graceful = delete_following_log(&pods, name, MINUTE).await;
    let text = show(&g.lines);
    assert!(
        line_index(
            &g.lines,
            &format!("relayed terminate to registered descendant PID {new}")
        )
        .is_some(),
        "the Pod's relay reached the new app through deputy-agent run:\n{text}"
    );
    assert!(
        line_index(&g.lines, "deputy-app: shutdown handler ran").is_some()
            && line_index(&g.lines, RELAY_CLEAN).is_some(),
        "the new app shut down through its callback:\n{text}"
    );
    for whole in [&previous, &current, &text] {
        assert!(
            !whole.contains("decoy PID"),
            "the decoy was signalled:\n{whole}"
        );
    }
    assert_eq!(g.deletion.exit_code, Some(0), "{text}");
    let events = termination_events(&node, &ns.name, name)
        .await
        .expect("events");
    let hook_failures = events.iter().filter(|r| *r == "FailedPreStopHook").count();
    let gone = g.deletion.gone_after.as_secs_f64();
    figures::record(
        "faults",
        &format!(
            "{name} ({fault:?}): restarts {}, last exit {} ({}), the old app's PID {old} given to a \
             decoy, the new app PID {new}; deleted: relayed to PID {new}, exit 0, gone {gone:.2} \
             s; decoy signalled 0 times; FailedPreStopHook {hook_failures} (events {events:?})",
            status.restart_count,
            last.exit_code,
            last.reason.as_deref().unwrap_or("?"),
        ),
        json!({
            "pod": name, "fault": format!("{fault:?}"), "restarts": status.restart_count,
            "last_exit_code": last.exit_code, "last_reason": last.reason,
            "old_pid": old, "new_pid": new, "gone_s": gone, "decoy_signalled": 0,
            "failed_prestop_hooks": hook_failures,
        }),
    );
    if let Fault::Oom = fault {
        assert_eq!(
            last.reason.as_deref(),
            Some("OOMKilled"),
            "the runtime names the OOM kill"
        );
    }
    // Liveness kills of a hung app end in FailedPreStopHook for that restart (the relay was cut
    // at the probe's 3 s grace); the deletion itself must add none.
    assert!(
        hook_failures <= usize::from(matches!(fault, Fault::Liveness)),
        "events {events:?}"
    );
}

#[tokio::test]
async fn a_liveness_restart_leaves_the_old_registration_and_the_relay_reaches_only_the_new_app() {
    let _ = node!(
        "a_liveness_restart_leaves_the_old_registration_and_the_relay_reaches_only_the_new_app"
    );
    let _node = NODE.read().await;
    restart_then_delete(Fault::Liveness, "liveness", "/deputy/ipc/unhealthy").await;
}

#[tokio::test]
async fn an_oom_kill_leaves_the_old_registration_and_the_relay_reaches_only_the_new_app() {
    let _ = node!("an_oom_kill_leaves_the_old_registration_and_the_relay_reaches_only_the_new_app");
    let _node = NODE.read().await;
    restart_then_delete(Fault::Oom, "oom", "/deputy/ipc/oom").await;
}
