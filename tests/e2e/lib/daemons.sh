# shellcheck shell=bash
# Daemons: starting one in the node's network namespace, watching it by its recorded PID,
# waiting for readiness, stopping it, and start_all: the node's daemons in order, each waited for.
# Expects (harness.sh): STATE, PKI, LOGS, PIDS, CTRD, CTRD_SOCK, IMG_CACHE, NETNS_PATH, NODE_IP,
# NODE_NAME, SVC_CIDR, DAEMONS, log, die; from select_lane (lib/lanes.sh): K8S_BIN, ETCD_BIN,
# CTRD_BIN; in_node (lib/network.sh), import_image (lib/images.sh).

# start NAME CMD...: runs CMD in the node's network namespace in its own session, logging to
# $LOGS/NAME.log; it inherits none of our stdin, stdout or stderr.
start() {
	local name=$1
	shift
	# A background job of a shell without job control is no process-group leader, so setsid
	# does not fork and $! is the daemon's PID.
	setsid nsenter --net="$NETNS_PATH" -- "$@" </dev/null >>"$LOGS/$name.log" 2>&1 9>&- &
	echo $! >"$PIDS/$name.pid"
	log "started $name (pid $!, log $LOGS/$name.log)"
}

# running PID: the process exists and has not exited (a zombie has: it waits only for its
# parent, here whatever adopted it, to reap it).
running() {
	local pstate
	pstate=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
	[[ -n $pstate && $pstate != Z ]]
}

alive() { [[ -f $PIDS/$1.pid ]] && running "$(cat "$PIDS/$1.pid")"; }

# wait_for WHAT SECONDS DAEMON CMD...: polls CMD until it succeeds, DAEMON dies, or the deadline.
wait_for() {
	local what=$1 secs=$2 daemon=$3
	shift 3
	local deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if [[ -n $daemon ]] && ! alive "$daemon"; then
			tail -n 30 "$LOGS/$daemon.log" >&2 || true
			die "$daemon exited while waiting for $what (log: $LOGS/$daemon.log)"
		fi
		((SECONDS < deadline)) || {
			[[ -n $daemon ]] && tail -n 30 "$LOGS/$daemon.log" >&2
			die "timed out after ${secs}s waiting for $what"
		}
		sleep 0.5
	done
}

kubectl() { "$STATE/kubectl" --kubeconfig "$STATE/kubeconfig" "$@"; }

api_ready() {
	curl -sf --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" \
		"https://$NODE_IP:6443/readyz" | grep -qx ok
}

node_ready() {
	[[ $(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

node_settled() {
	# Ready, the not-ready taint lifted by the node lifecycle controller, and the service
	# account controller has made the default ServiceAccount, so Pods can be created.
	node_ready &&
		[[ -z $(kubectl get node "$NODE_NAME" -o jsonpath='{.spec.taints}') ]] &&
		kubectl -n default get serviceaccount default &&
		kubectl -n default get configmap kube-root-ca.crt
}

# start_daemon NAME: starts one daemon of the node with its flags and waits until it serves
# (start_all starts them in order; restart_daemon restarts one of them under the others).
start_daemon() {
	local k=$K8S_BIN
	case $1 in
	etcd)
		start etcd "$ETCD_BIN/etcd" --name e2e --data-dir "$STATE/etcd" \
			--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
			--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
			--initial-cluster e2e=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
			--unsafe-no-fsync --log-level warn
		wait_for "etcd /health" 60 etcd in_node curl -sf --max-time 2 http://127.0.0.1:2379/health
		;;
	kube-apiserver)
		start kube-apiserver "$k/kube-apiserver" \
			--etcd-servers=http://127.0.0.1:2379 \
			--bind-address=0.0.0.0 --advertise-address="$NODE_IP" --secure-port=6443 \
			--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
			--client-ca-file="$PKI/ca.crt" \
			--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
			--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
			--kubelet-certificate-authority="$PKI/ca.crt" \
			--kubelet-preferred-address-types=InternalIP \
			--service-account-issuer=https://kubernetes.default.svc.cluster.local \
			--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
			--service-cluster-ip-range="$SVC_CIDR" \
			--authorization-mode=Node,RBAC \
			--enable-admission-plugins=NodeRestriction \
			--allow-privileged=true --profiling=false --v=1
		wait_for "kube-apiserver /readyz" 120 kube-apiserver api_ready
		;;
	containerd)
		mkdir -p "$CTRD"
		# containerd finds its shim on PATH: the lane's own first.
		start containerd env PATH="$CTRD_BIN:$PATH" "$CTRD_BIN/containerd" --config "$STATE/etc/containerd.toml"
		wait_for "containerd" 60 containerd "$CTRD_BIN/ctr" --address "$CTRD_SOCK" version
		;;
	kube-controller-manager)
		start kube-controller-manager "$k/kube-controller-manager" \
			--kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
			--authentication-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
			--authorization-kubeconfig="$STATE/kube-controller-manager.kubeconfig" \
			--bind-address=127.0.0.1 --leader-elect=false --use-service-account-credentials=true \
			--service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
			--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
			--service-cluster-ip-range="$SVC_CIDR" --profiling=false --v=1
		;;
	kube-scheduler)
		start kube-scheduler "$k/kube-scheduler" \
			--kubeconfig="$STATE/kube-scheduler.kubeconfig" \
			--authentication-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
			--authorization-kubeconfig="$STATE/kube-scheduler.kubeconfig" \
			--bind-address=127.0.0.1 --leader-elect=false --profiling=false --v=1
		;;
	kubelet)
		mkdir -p "$STATE/kubelet" "$STATE/pod-logs" "$STATE/kubelet-plugins"
		start kubelet "$k/kubelet" --config="$STATE/etc/kubelet.yaml" \
			--kubeconfig="$STATE/kubelet.kubeconfig" --root-dir="$STATE/kubelet" \
			--hostname-override="$NODE_NAME" --node-ip="$NODE_IP" --v=1
		;;
	kube-proxy)
		start kube-proxy "$k/kube-proxy" --config="$STATE/etc/kube-proxy.yaml" --v=1
		;;
	*) die "no daemon $1 (the daemons: ${DAEMONS[*]})" ;;
	esac
}

start_all() {
	mkdir -p "$LOGS" "$PIDS" "$STATE/etcd"
	start_daemon etcd
	start_daemon kube-apiserver
	start_daemon containerd
	import_image "$IMG_CACHE/pause.tar"
	import_image "$IMG_CACHE/busybox.tar"
	start_daemon kube-controller-manager
	start_daemon kube-scheduler
	start_daemon kubelet
	start_daemon kube-proxy
	wait_for_kubelet
	wait_for "node $NODE_NAME untainted with a default ServiceAccount" 120 kube-controller-manager node_settled
	wait_for "kube-proxy /healthz" 60 kube-proxy in_node curl -sf --max-time 2 http://127.0.0.1:10256/healthz
}

wait_for_kubelet() {
	wait_for "kubelet /healthz" 120 kubelet in_node curl -sf --max-time 2 http://127.0.0.1:10248/healthz
	wait_for "node $NODE_NAME Ready" 180 kubelet node_ready
}

# restart_daemon NAME [DOWN_SECONDS]: stops one daemon of the running node (SIGTERM, as a
# service manager would), keeps it down DOWN_SECONDS (default 0), starts it again with the same
# flags and waits until it serves again (for the kubelet: /healthz and the node Ready). Prints
# one line: `NAME stopped in S s (by SIGTERM|SIGKILL), down D s, serving again T s after the stop
# began`.
restart_daemon() {
	local name=$1 down=${2:-0} t0
	case $name in
	kube-apiserver | kubelet | kube-controller-manager | kube-scheduler | kube-proxy | containerd) ;;
	*) die "restart knows kube-apiserver, kubelet, kube-controller-manager, kube-scheduler, kube-proxy and containerd, not ${name:-nothing}" ;;
	esac
	[[ $down =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "restart: DOWN_SECONDS must be a number of seconds, not $down"
	t0=$(date +%s.%N)
	stop "$name"
	local stopped t1
	stopped=$(date +%s.%N)
	sleep "$down"
	t1=$(date +%s.%N)
	start_daemon "$name"
	[[ $name == kubelet ]] && wait_for_kubelet
	[[ $name == kube-apiserver ]] && wait_for "node $NODE_NAME Ready" 120 kubelet node_ready
	local now
	now=$(date +%s.%N)
	awk -v a="$t0" -v s="$stopped" -v b="$t1" -v n="$now" -v name="$name" -v by="$STOPPED_BY" \
		'BEGIN{printf "%s stopped in %.2f s (by SIG%s), down %.2f s, serving again %.2f s after the stop began\n", name, s-a, by, b-s, n-a}' </dev/null
}

is_up() {
	local d
	for d in "${DAEMONS[@]}"; do alive "$d" || return 1; done
	api_ready && node_ready
}

# stop NAME: SIGTERM, then SIGKILL after a deadline; returns once the process is gone. Sets
# STOPPED_BY to the signal that ended it.
STOPPED_BY=
stop() {
	local name=$1 pid
	STOPPED_BY=TERM
	[[ -f $PIDS/$name.pid ]] || return 0
	pid=$(cat "$PIDS/$name.pid")
	if running "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		local deadline=$((SECONDS + 20))
		while running "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
		if running "$pid"; then
			log "$name (pid $pid) ignored SIGTERM for 20 s; sending SIGKILL"
			kill -KILL "$pid" 2>/dev/null || true
			STOPPED_BY=KILL
		fi
		while running "$pid"; do sleep 0.1; done
		log "stopped $name (pid $pid)"
	fi
	rm -f "$PIDS/$name.pid"
}
