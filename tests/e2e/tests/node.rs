//! Proof that the harness's node is a real Kubernetes: a real API server (TLS, RBAC, service
//! account tokens, admission webhooks, Pod Security), and a real kubelet running real
//! containers (logs, exec, Services, preStop hooks and the termination sequence).
//!
//! Run through `make e2e-test`. Each test works in namespaces of its own, so the suite passes
//! on a node where other workloads already run.

use deputy_e2e::figures;
use deputy_e2e::pods::{dry_run, pod, sh};
use deputy_e2e::test_webhook;
use deputy_e2e::{
    k8s_version, node, poll, read_events, uptime, wait_gone, wait_running, Node, TestNamespace,
    BUSYBOX, MINUTE, TOOL,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node as KubeNode, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

#[tokio::test]
async fn api_server_is_ready_and_the_node_is_ready() {
    let node = node!("api_server_is_ready_and_the_node_is_ready");
    let req = http::Request::get("/readyz?verbose")
        .body(Vec::new())
        .unwrap();
    let readyz = node.client.request_text(req).await.expect("GET /readyz");
    assert!(readyz.contains("[+]etcd ok"), "readyz: {readyz}");
    assert!(
        readyz.trim_end().ends_with("readyz check passed"),
        "readyz: {readyz}"
    );

    let version = node.client.apiserver_version().await.expect("GET /version");
    assert_eq!(version.git_version, k8s_version());

    let nodes = Api::<KubeNode>::all(node.client.clone())
        .list(&ListParams::default())
        .await
        .expect("list nodes");
    assert_eq!(nodes.items.len(), 1, "one node");
    let n = &nodes.items[0];
    let status = n.status.clone().unwrap();
    let ready = status
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("a Ready condition");
    assert_eq!(ready.status, "True", "node Ready: {ready:?}");
    let info = status.node_info.unwrap();
    assert_eq!(info.kubelet_version, k8s_version());
    assert!(
        info.container_runtime_version.starts_with("containerd://"),
        "{}",
        info.container_runtime_version
    );
    let ip = status
        .addresses
        .unwrap_or_default()
        .into_iter()
        .find(|a| a.type_ == "InternalIP")
        .expect("an InternalIP");
    assert!(
        ip.address.starts_with("198.18."),
        "node IP {} is in 198.18.0.0/15",
        ip.address
    );
}

#[tokio::test]
async fn busybox_pod_runs_with_logs_exec_and_a_service_account_token() {
    let node = node!("busybox_pod_runs_with_logs_exec_and_a_service_account_token");
    let ns = node.namespace("busybox", &[]).await;
    let pods = ns.pods();
    let p = pod(json!({
        "metadata": {"name": "bb"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [
            sh("bb", "echo hello-from-busybox; id; exec sleep 3600")]}
    }));
    pods.create(&PostParams::default(), &p)
        .await
        .expect("create Pod");
    wait_running(&pods, "bb", MINUTE).await.expect("Pod runs");

    let logs = poll("the Pod's logs", MINUTE, || async {
        let out = node.kubectl(&["-n", &ns.name, "logs", "bb"])?;
        Ok((out.success && out.stdout.contains("hello-from-busybox")).then_some(out.stdout))
    })
    .await
    .expect("kubectl logs");
    assert!(
        logs.contains("uid=65534"),
        "the image's numeric User applies: {logs}"
    );

    let exec = node
        .kubectl_ok(&[
            "-n",
            &ns.name,
            "exec",
            "bb",
            "--",
            "sh",
            "-c",
            "echo exec-ok; hostname",
        ])
        .expect("kubectl exec");
    assert_eq!(exec.lines().collect::<Vec<_>>(), ["exec-ok", "bb"]);

    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let token = node
        .kubectl_ok(&[
            "-n",
            &ns.name,
            "exec",
            "bb",
            "--",
            "cat",
            &format!("{dir}/token"),
        ])
        .expect("read the token");
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let mounted_ns = node
        .kubectl_ok(&[
            "-n",
            &ns.name,
            "exec",
            "bb",
            "--",
            "cat",
            &format!("{dir}/namespace"),
        ])
        .unwrap();
    assert_eq!(mounted_ns, ns.name);

    // The token is valid: the API server, reached through the kubernetes Service and verified
    // against the mounted CA, accepts it (system:discovery lets any authenticated user read
    // /version; anonymous is refused a list). The client is the tool image's rustls, in a
    // one-shot Pod: busybox's wget offers TLS 1.2 with SHA-1 signatures only, which API servers
    // built with Go ≥ 1.25 (Kubernetes ≥ 1.35) refuse.
    let service = Api::<Service>::namespaced(node.client.clone(), "default")
        .get("kubernetes")
        .await
        .expect("the kubernetes Service");
    let api = format!(
        "{}:443",
        service
            .spec
            .and_then(|s| s.cluster_ip)
            .expect("a ClusterIP")
    );
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    let get = |name: &str, path: String, token: bool| {
        let mut args = vec![
            "https-get".to_owned(),
            api.clone(),
            path,
            format!("{sa}/ca.crt"),
        ];
        if token {
            args.push(format!("{sa}/token"));
        }
        json!({"name": name, "image": TOOL, "imagePullPolicy": "Never", "args": args})
    };
    let client = pod(json!({
        "metadata": {"name": "api-client"},
        "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 1, "containers": [
            get("as-sa", format!("/api/v1/namespaces/{}/pods/bb", ns.name), true),
            get("anonymous", "/version".into(), false)]}
    }));
    pods.create(&PostParams::default(), &client)
        .await
        .expect("create the API client Pod");
    poll("the API client Pod to finish", MINUTE, || async {
        let phase = pods.get("api-client").await?.status.and_then(|s| s.phase);
        Ok(matches!(phase.as_deref(), Some("Succeeded") | Some("Failed")).then_some(()))
    })
    .await
    .expect("the API client Pod finishes");
    let mut out = String::new();
    for c in ["as-sa", "anonymous"] {
        out += &node
            .kubectl_ok(&["-n", &ns.name, "logs", "api-client", "-c", c])
            .expect("the API client's log");
        out.push('\n');
    }
    // The default ServiceAccount may not read Pods: a 403 proves the token authenticated
    // (an invalid token gets a 401).
    assert!(out.contains("403"), "authenticated but forbidden: {out}");
    assert!(
        out.contains(&k8s_version()),
        "version through the Service: {out}"
    );
}

#[tokio::test]
async fn deployment_rolls_out_and_its_service_routes_from_another_pod() {
    let node = node!("deployment_rolls_out_and_its_service_routes_from_another_pod");
    let ns = node.namespace("service", &[]).await;
    let deploy: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
                    "name": "httpd", "image": BUSYBOX, "imagePullPolicy": "Never",
                    "command": ["/bin/sh", "-c",
                        "mkdir -p /tmp/www && hostname > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"],
                    "ports": [{"containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1}
                }]}
            }
        }
    }))
    .unwrap();
    let deploys: Api<Deployment> = Api::namespaced(node.client.clone(), &ns.name);
    deploys
        .create(&PostParams::default(), &deploy)
        .await
        .expect("create Deployment");
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    let svc = Api::<Service>::namespaced(node.client.clone(), &ns.name)
        .create(&PostParams::default(), &svc)
        .await
        .expect("create Service");
    let cluster_ip = svc.spec.unwrap().cluster_ip.unwrap();
    assert!(cluster_ip.starts_with("198.19."), "ClusterIP {cluster_ip}");

    poll("the Deployment to roll out", 2 * MINUTE, || async {
        let d = deploys.get("web").await?;
        let s = d.status.unwrap_or_default();
        Ok((s.available_replicas == Some(2) && s.updated_replicas == Some(2)).then_some(()))
    })
    .await
    .expect("rollout");
    let slices: Api<EndpointSlice> = Api::namespaced(node.client.clone(), &ns.name);
    poll(
        "an EndpointSlice with 2 ready endpoints",
        MINUTE,
        || async {
            let list = slices
                .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
                .await?;
            let ready = list
                .items
                .iter()
                .flat_map(|s| s.endpoints.iter())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count();
            Ok((ready == 2).then_some(()))
        },
    )
    .await
    .expect("endpoints");
    let backends: Vec<String> = ns
        .pods()
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|p| p.metadata.name.unwrap())
        .collect();

    let client = pod(json!({
        "metadata": {"name": "client"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [sh("client", "exec sleep 3600")]}
    }));
    ns.pods()
        .create(&PostParams::default(), &client)
        .await
        .unwrap();
    wait_running(&ns.pods(), "client", MINUTE)
        .await
        .expect("client runs");

    // kube-proxy programs the Service shortly after the endpoints are ready: poll.
    // (busybox-static 1.35's `wget -T` segfaults; `timeout` bounds each request instead.)
    let script = format!(
        "for i in $(seq 1 24); do timeout 5 wget -qO- http://{cluster_ip}:80/ || echo FAILED; done"
    );
    let seen = poll("the Service to route to both Pods", MINUTE, || async {
        let out =
            node.kubectl_ok(&["-n", &ns.name, "exec", "client", "--", "sh", "-c", &script])?;
        let lines: Vec<String> = out.lines().map(str::to_string).collect();
        let all_backends = lines.iter().all(|l| backends.contains(l));
        let both = backends.iter().all(|b| lines.contains(b));
        Ok((all_backends && both).then_some(lines))
    })
    .await
    .expect("Service routing");
    assert_eq!(seen.len(), 24);
}

/// Runs Pod `name` whose one container runs `main` with `hook` as its preStop, both appending
/// `LABEL <uptime>` records to a hostPath file; once `first_record` is there, deletes the Pod and
/// waits until it is gone. Returns the records and the node's uptime just before the DELETE.
async fn record_termination(
    node: &Node,
    ns: &TestNamespace,
    name: &str,
    (main, hook): (&str, &str),
    grace_seconds: i64,
    first_record: &str,
) -> (Vec<(String, f64)>, f64) {
    let dir = node.host_dir(&ns.name);
    let mut c = sh("app", main);
    c["lifecycle"] = json!({"preStop": {"exec": {"command": ["/bin/sh", "-c", hook]}}});
    c["volumeMounts"] = json!([{"name": "out", "mountPath": "/out"}]);
    let p = pod(json!({
        "metadata": {"name": name},
        "spec": {"terminationGracePeriodSeconds": grace_seconds, "containers": [c],
            "volumes": [{"name": "out", "hostPath": {"path": dir, "type": "Directory"}}]}
    }));
    let pods = ns.pods();
    pods.create(&PostParams::default(), &p).await.unwrap();
    wait_running(&pods, name, MINUTE).await.expect("Pod runs");
    let events = dir.join("events");
    poll(&format!("a {first_record} record"), MINUTE, || async {
        Ok(read_events(&events)
            .iter()
            .any(|(l, _)| l == first_record)
            .then_some(()))
    })
    .await
    .unwrap();

    let deleted_at = uptime();
    pods.delete(name, &DeleteParams::default()).await.unwrap();
    wait_gone(&pods, name, MINUTE)
        .await
        .expect("Pod terminates");
    (read_events(&events), deleted_at)
}

#[tokio::test]
async fn prestop_hook_runs_before_sigterm() {
    let node = node!("prestop_hook_runs_before_sigterm");
    let ns = node.namespace("prestop", &[]).await;
    let main = r#"now() { cut -d' ' -f1 /proc/uptime; }
trap 'echo "TERM $(now)" >> /out/events; exit 0' TERM
echo "START $(now)" >> /out/events
while :; do sleep 1 & wait $!; done"#;
    let hook = r#"echo "PRESTOP $(cut -d' ' -f1 /proc/uptime)" >> /out/events; sleep 2; echo "PRESTOP_END $(cut -d' ' -f1 /proc/uptime)" >> /out/events"#;
    let (ev, deleted_at) =
        record_termination(&node, &ns, "prestop", (main, hook), 30, "START").await;

    let labels: Vec<&str> = ev.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        labels,
        ["START", "PRESTOP", "PRESTOP_END", "TERM"],
        "order: {ev:?}"
    );
    let t = |label: &str| ev.iter().find(|(l, _)| l == label).unwrap().1;
    assert!(
        t("PRESTOP") >= deleted_at - 0.5,
        "hook after the delete: {ev:?} deleted at {deleted_at}"
    );
    assert!(
        t("TERM") >= t("PRESTOP_END"),
        "SIGTERM only after the hook finished: {ev:?}"
    );
    assert!(
        t("TERM") - t("PRESTOP") >= 1.9,
        "the hook's 2 s sleep came first: {ev:?}"
    );
    assert!(
        t("TERM") - deleted_at < 15.0,
        "SIGTERM long before the 30 s grace ran out: {ev:?}"
    );
    let (to_hook, hook_to_term) = (t("PRESTOP") - deleted_at, t("TERM") - t("PRESTOP"));
    figures::record(
        "prestop",
        &format!(
            "delete -> preStop {to_hook:.2} s, preStop -> SIGTERM {hook_to_term:.2} s (hook sleeps 2 s)"
        ),
        json!({
            "delete_to_prestop_s": to_hook, "prestop_to_sigterm_s": hook_to_term,
            "hook_sleep_s": 2,
        }),
    );
}

#[tokio::test]
async fn hook_outlasting_the_grace_period_gets_sigterm_then_sigkill_2s_later() {
    let node = node!("hook_outlasting_the_grace_period_gets_sigterm_then_sigkill_2s_later");
    let ns = node.namespace("grace", &[]).await;
    // The main process survives SIGTERM and keeps recording that it is alive, so the last
    // ALIVE record dates the SIGKILL.
    let main = r#"now() { cut -d' ' -f1 /proc/uptime; }
trap 'echo "TERM $(now)" >> /out/events' TERM
while :; do echo "ALIVE $(now)" >> /out/events; sleep 0.1 & wait $!; done"#;
    let hook = r#"echo "PRESTOP $(cut -d' ' -f1 /proc/uptime)" >> /out/events; sleep 60; echo "PRESTOP_END $(cut -d' ' -f1 /proc/uptime)" >> /out/events"#;
    let grace = 4.0;
    let (ev, deleted_at) =
        record_termination(&node, &ns, "grace", (main, hook), grace as i64, "ALIVE").await;

    let t = |label: &str| ev.iter().find(|(l, _)| l == label).map(|e| e.1);
    let prestop = t("PRESTOP").unwrap_or_else(|| panic!("the hook ran: {ev:?}"));
    let term = t("TERM").unwrap_or_else(|| panic!("SIGTERM arrived: {ev:?}"));
    assert!(
        t("PRESTOP_END").is_none(),
        "the hook never finished: {ev:?}"
    );
    let last_alive = ev
        .iter()
        .filter(|(l, _)| l == "ALIVE")
        .map(|e| e.1)
        .fold(0.0, f64::max);
    // Negative control: the process outlived SIGTERM, so what ended it was the SIGKILL.
    assert!(
        ev.iter().any(|(l, at)| l == "ALIVE" && *at > term + 0.5),
        "alive after SIGTERM: {ev:?}"
    );
    // The kubelet's grace clock starts when it sees the delete, before it execs the hook, so
    // SIGTERM is dated from the DELETE: at least the grace period later (less a little: the
    // delete returns after the kubelet may already have seen it), plus the kubelet's reaction.
    let delete_to_term = term - deleted_at;
    assert!(
        (grace - 0.5..=grace + 5.0).contains(&delete_to_term),
        "SIGTERM {delete_to_term:.2} s after the DELETE, expected the {grace} s grace period \
         plus the kubelet's reaction: {ev:?}"
    );
    assert!(
        term > prestop,
        "SIGTERM came after the hook started: {ev:?}"
    );
    let to_kill = last_alive - term;
    figures::record(
        "grace",
        &format!(
            "DELETE -> SIGTERM {delete_to_term:.2} s (preStop -> SIGTERM {:.2} s, grace {grace} s), \
             SIGTERM -> SIGKILL {to_kill:.2} s",
            term - prestop
        ),
        json!({
            "delete_to_sigterm_s": delete_to_term, "prestop_to_sigterm_s": term - prestop,
            "grace_s": grace, "sigterm_to_sigkill_s": to_kill,
        }),
    );
    // The kubelet gives 2 s after SIGTERM; ALIVE records come every 0.1 s but may lag on a
    // loaded machine, hence the wide bounds.
    assert!(
        (1.0..=3.5).contains(&to_kill),
        "SIGKILL {to_kill:.2} s after SIGTERM, expected about 2 s"
    );
}

#[tokio::test]
async fn read_only_root_with_a_memory_emptydir_subpath_can_host_a_unix_socket() {
    let node = node!("read_only_root_with_a_memory_emptydir_subpath_can_host_a_unix_socket");
    let ns = node.namespace("socket", &[]).await;
    let p = pod(json!({
        "metadata": {"name": "sock"},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "tool", "image": TOOL, "imagePullPolicy": "Never",
                "args": ["bind-unix", "/run/deputy/agent.sock"],
                "securityContext": {"readOnlyRootFilesystem": true, "runAsNonRoot": true,
                    "allowPrivilegeEscalation": false},
                "volumeMounts": [{"name": "run", "mountPath": "/run/deputy", "subPath": "deputy"}]
            }],
            "volumes": [{"name": "run", "emptyDir": {"medium": "Memory"}}]
        }
    }));
    let pods = ns.pods();
    pods.create(&PostParams::default(), &p).await.unwrap();
    wait_running(&pods, "sock", MINUTE).await.expect("Pod runs");
    poll("the socket to be bound", MINUTE, || async {
        let out = node.kubectl(&["-n", &ns.name, "logs", "sock"])?;
        Ok(out
            .stdout
            .contains("listening on /run/deputy/agent.sock")
            .then_some(()))
    })
    .await
    .unwrap();
    let tool = |args: &[&str]| {
        let mut a = vec![
            "-n",
            ns.name.as_str(),
            "exec",
            "sock",
            "--",
            "/bin/deputy-e2e-tool",
        ];
        a.extend_from_slice(args);
        node.kubectl(&a).unwrap()
    };
    let pong = tool(&["connect-unix", "/run/deputy/agent.sock"]);
    assert_eq!(pong.stdout, "pong\n", "{pong:?}");
    let root = tool(&["write-file", "/probe"]);
    assert!(
        !root.success && root.stderr.contains("Read-only file system"),
        "{root:?}"
    );
    // Negative control: the same write succeeds on the volume.
    let vol = tool(&["write-file", "/run/deputy/probe"]);
    assert!(vol.success, "{vol:?}");
    let mounts = tool(&["cat", "/proc/self/mountinfo"]).stdout;
    let line = mounts
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/run/deputy"))
        .unwrap_or_else(|| panic!("/run/deputy is a mount: {mounts}"));
    assert!(
        line.contains(" - tmpfs "),
        "medium Memory is a tmpfs: {line}"
    );
}

#[tokio::test]
async fn mutating_webhook_behind_a_service_patches_stored_pods() {
    let node = node!("mutating_webhook_behind_a_service_patches_stored_pods");
    let ns = node.namespace("webhook", &[]).await;
    let target_label = format!("target-{}", deputy_e2e::unique());
    let target = node
        .namespace(
            "webhook-target",
            &[("e2e.k8s-deputy.io/webhook", &target_label)],
        )
        .await;

    // The tool's webhook behind the Service e2e-webhook, with a CA made by the test.
    let ca_pem = test_webhook::serve(&node, &ns, "webhook", &[]).await;

    let configuration = test_webhook::configuration(
        &format!("e2e-{}", ns.name),
        "mutate.e2e.k8s-deputy.io",
        (&ns, "webhook"),
        &ca_pem,
        ("e2e.k8s-deputy.io/webhook", &target_label),
    );
    let _cleanup = test_webhook::register(&node, configuration).await;

    let annotation = |p: &Pod| {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("e2e.k8s-deputy.io/mutated").cloned())
    };
    // The API server applies the configuration once its informer has seen it, and with
    // failurePolicy Fail rejects Pods until it reaches the webhook through the Service: a dry run
    // tells when both are true; then the patch must be in the stored object.
    let target_pods = target.pods();
    let bb = pod(json!({
        "metadata": {"name": "mutated"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [sh("bb", "exec sleep 3600")]}
    }));
    poll("the webhook configuration in effect", MINUTE, || async {
        let probe = target_pods.create(&dry_run(), &bb).await?;
        Ok(annotation(&probe).map(drop))
    })
    .await
    .expect("a dry-run Pod is mutated through the webhook");
    let created = target_pods
        .create(&PostParams::default(), &bb)
        .await
        .expect("create through the webhook");
    assert_eq!(
        annotation(&created).as_deref(),
        Some("webhook"),
        "{:?}",
        created.metadata
    );
    let stored = target_pods.get("mutated").await.unwrap();
    assert_eq!(
        annotation(&stored).as_deref(),
        Some("webhook"),
        "the patch is stored"
    );
    let logs = node
        .kubectl_ok(&["-n", &ns.name, "logs", "webhook"])
        .unwrap();
    assert!(
        logs.contains(&format!("mutating Pod {}/mutated", target.name)),
        "the webhook saw the request: {logs}"
    );
    // The mutated Pod runs: the patched object passed validation.
    wait_running(&target_pods, "mutated", MINUTE)
        .await
        .expect("mutated Pod runs");

    // Negative control: outside the selected namespace the webhook is not called.
    let plain = ns.pods().create(&PostParams::default(), &bb).await.unwrap();
    assert_eq!(annotation(&plain), None, "{:?}", plain.metadata);
}

#[tokio::test]
async fn restricted_pod_security_rejects_a_privileged_pod() {
    let node = node!("restricted_pod_security_rejects_a_privileged_pod");
    let ns = node
        .namespace(
            "restricted",
            &[
                ("pod-security.kubernetes.io/enforce", "restricted"),
                ("pod-security.kubernetes.io/enforce-version", "latest"),
            ],
        )
        .await;
    let mut privileged = sh("bad", "exec sleep 3600");
    privileged["securityContext"] = json!({"privileged": true});
    let bad =
        pod(json!({"metadata": {"name": "privileged"}, "spec": {"containers": [privileged]}}));
    match ns.pods().create(&PostParams::default(), &bad).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status
                    .message
                    .contains("violates PodSecurity \"restricted:latest\"")
                    && status.message.contains("privileged"),
                "{}",
                status.message
            );
        }
        other => panic!("a privileged Pod must be rejected, got {other:?}"),
    }
    // Negative control: a Pod that meets the restricted profile is admitted and runs.
    let mut good = sh("good", "exec sleep 3600");
    good["securityContext"] = json!({
        "runAsNonRoot": true, "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}
    });
    let good = pod(json!({
        "metadata": {"name": "restricted"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [good]}
    }));
    ns.pods()
        .create(&PostParams::default(), &good)
        .await
        .expect("a restricted Pod is admitted");
    wait_running(&ns.pods(), "restricted", MINUTE)
        .await
        .expect("and runs");
}
