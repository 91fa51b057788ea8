#!/usr/bin/env bash
# The demo: installs kube-front-proxy, makes a development PKI, starts the API-server emulator
# on 127.0.0.1:6443 and the proxy on 127.0.0.1:8443 in front of it. Ctrl-C stops both.
#   scripts/demo.sh [extra mitmdump flags, e.g. -w flows.mitm]   (MITM_TOOL=mitmweb for the UI)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f certs/out/ca.crt ] || .venv/bin/python certs/devpki.py >/dev/null

mkdir -p run
.venv/bin/python -m tests.emulator \
    --secure-port 6443 \
    --tls-cert-file certs/out/apiserver.crt --tls-private-key-file certs/out/apiserver.key \
    --client-ca-file certs/out/ca.crt \
    --requestheader-client-ca-file certs/out/front-proxy-ca.crt \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-uid-headers X-Remote-Uid \
    --request-log run/apiserver-requests.jsonl >run/apiserver.log 2>&1 &
emulator=$!
trap 'kill $emulator 2>/dev/null || true' EXIT

cat >run/kubeconfig <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: kube-front-proxy
  cluster:
    server: https://127.0.0.1:8443
    certificate-authority: $PWD/certs/out/proxy-ca.crt
users:
- name: alice
  user: {username: alice, password: alice-password}
contexts:
- name: alice@kube-front-proxy
  context: {cluster: kube-front-proxy, user: alice}
current-context: alice@kube-front-proxy
KUBECONFIG

cat <<EOF_HELP

  API server emulator: https://127.0.0.1:6443   (log: run/apiserver.log)
  kube-front-proxy:    https://127.0.0.1:8443   users alice / alice-password, bob / bob-password

  In another terminal:
    export KUBECONFIG=$PWD/run/kubeconfig
    kubectl auth whoami
    kubectl get pods

EOF_HELP
.venv/bin/"${MITM_TOOL:-mitmdump}" -s addon/k8s_auth.py --set k8s_auth_config=config/config.yaml "$@"
