# shellcheck shell=bash
# PKI: the cluster CA, a key and certificate for every daemon and client (openssl), the
# service-account key pair, and a kubeconfig per client (templates/kubeconfig.yaml.tmpl).
# Expects (harness.sh): PKI, STATE, NODE_IP, KUBE_SVC_IP, NODE_NAME; render (lib/render.sh).

# cert NAME CN O [SAN]: a key and a certificate signed by the cluster CA.
cert() {
	local name=$1 cn=$2 o=$3 san=${4:-} subj="/CN=$2"
	[[ -n $o ]] && subj="/O=$o/CN=$cn"
	openssl req -new -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
	{
		echo "basicConstraints=CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		if [[ -n $san ]]; then
			echo "extendedKeyUsage=serverAuth,clientAuth"
			echo "subjectAltName=$san"
		else
			echo "extendedKeyUsage=clientAuth"
		fi
	} >"$PKI/$name.ext"
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 30 -sha256 -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr" "$PKI/$name.ext"
}

# kubeconfig FILE CERT: a kubeconfig for the API server with the client certificate CERT
# (templates/kubeconfig.yaml.tmpl).
kubeconfig() {
	local file=$1 c=$2
	render kubeconfig.yaml.tmpl NODE_IP CLIENT="$c" CA_DATA="$(base64 -w0 "$PKI/ca.crt")" \
		CERT_DATA="$(base64 -w0 "$PKI/$c.crt")" KEY_DATA="$(base64 -w0 "$PKI/$c.key")" >"$file"
	chmod 600 "$file"
}

write_pki() {
	mkdir -p "$PKI"
	openssl req -x509 -new -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -days 30 -sha256 \
		-subj "/CN=k8s-deputy-e2e-ca" -addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" -out "$PKI/ca.crt" 2>/dev/null
	cert apiserver kube-apiserver "" "IP:$NODE_IP,IP:$KUBE_SVC_IP,IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	cert kubelet-serving "system:node:$NODE_NAME" system:nodes "IP:$NODE_IP,DNS:$NODE_NAME"
	cert admin kubernetes-admin system:masters
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	cert kubelet "system:node:$NODE_NAME" system:nodes
	cert kube-controller-manager system:kube-controller-manager ""
	cert kube-scheduler system:kube-scheduler ""
	cert kube-proxy system:kube-proxy ""
	openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	kubeconfig "$STATE/kubeconfig" admin
	local c
	for c in kubelet kube-controller-manager kube-scheduler kube-proxy; do kubeconfig "$STATE/$c.kubeconfig" "$c"; done
}
