#!/usr/bin/env bash
# Checks kube-front-proxy's patches of mitmproxy (kube_front_proxy/seam) against the newest
# mitmproxy 12.x on PyPI, in a scratch environment: drift shows up before an upgrade.
# Exit 0: every patched target is unchanged; 1: a target changed (listed), review the patches.
#   scripts/check-mitmproxy-drift.sh ['mitmproxy==12.x.y']
set -euo pipefail
cd "$(dirname "$0")/.."
want=${1:-'mitmproxy>=12,<13'}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
.venv/bin/python -m venv "$scratch/venv"
# The locked set, with mitmproxy (and what it pins) left to the newest release asked for.
grep -vE '^(mitmproxy|mitmproxy-rs|mitmproxy-linux)==' requirements.lock \
    | sed -E 's/ *\\$//; /^ *--hash/d; /^ *#/d; /^$/d; s/==.*//' > "$scratch/deps.txt"
"$scratch/venv/bin/pip" install --quiet "$want" -r "$scratch/deps.txt"
"$scratch/venv/bin/pip" install --quiet --no-deps .
echo "mitmproxy $("$scratch/venv/bin/python" -c 'import mitmproxy.version as v; print(v.VERSION)')"
"$scratch/venv/bin/python" -m kube_front_proxy.seam
