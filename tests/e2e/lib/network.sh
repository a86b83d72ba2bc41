# shellcheck shell=bash
# Network: the node's network namespace, joined to the host by a veth pair (a /30), with a route
# for the Service range and no default route; in_node runs a command inside it.
# Expects (harness.sh): NETNS, NETNS_PATH, VETH_HOST, VETH_NODE, HOST_IP, NODE_IP, SVC_CIDR, die.

setup_network() {
	# Refuse to shadow anything the host already routes in our ranges.
	if ip -4 addr show | grep -qE 'inet 198\.1[89]\.'; then
		die "the host already has an address in 198.18.0.0/15; is another node up? (try: make e2e-down)"
	fi
	ip netns add "$NETNS"
	ip link add "$VETH_HOST" type veth peer name "$VETH_NODE"
	ip link set "$VETH_NODE" netns "$NETNS"
	ip addr add "$HOST_IP/30" dev "$VETH_HOST"
	ip link set "$VETH_HOST" up
	in_node ip link set lo up
	in_node ip addr add "$NODE_IP/30" dev "$VETH_NODE"
	in_node ip link set "$VETH_NODE" up
	# No default route: nothing in the node can reach beyond it. Service IPs need a route for
	# the node's own processes (the API server calls webhooks through their ClusterIP); kube-proxy
	# DNATs them before they leave, and the host answers no ARP for them.
	in_node ip route add "$SVC_CIDR" dev "$VETH_NODE"
}

in_node() { nsenter --net="$NETNS_PATH" -- "$@"; }
