#!/usr/bin/env bash
# Regenerates docs/mitmweb-flows.png: the demo under mitmweb, some kubectl traffic, and a
# screenshot of mitmweb's flow list taken with headless Chromium (apt-get install chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
MITM_TOOL=mitmweb scripts/demo.sh --set web_open_browser=false \
    --set web_columns=icon --set web_columns=method --set web_columns=path \
    --set web_columns=status --set web_columns=comment --set web_columns=time >"$log" 2>&1 &
demo=$!
trap 'kill $demo 2>/dev/null; pkill -f "k8s_auth_config=config/config.yaml" || true' EXIT
for _ in $(seq 60); do grep -q "token=" "$log" && break; sleep 1; done
url=$(grep -o "http://127.0.0.1:8081/?token=[a-z0-9]*" "$log" | head -1)

export KUBECONFIG=$PWD/run/kubeconfig
kubectl auth whoami >/dev/null
kubectl get pods >/dev/null
kubectl --username bob --password bob-password get pods >/dev/null
kubectl --username alice --password wrong get pods 2>/dev/null || true
kubectl exec nginx-1 -- echo hi >/dev/null

chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d)" --window-size=1300,480 --virtual-time-budget=8000 \
    --screenshot="$PWD/docs/mitmweb-flows.png" "$url"
