#!/usr/bin/env bash
# One command for the benchmark on a fresh machine: installs nginx, wrk and htpasswd if needed.
#   bench/run.sh [--rounds N] [--seconds S] [--connections C]
#   bench/run.sh --scaleout [--rounds N] [--seconds S] [--connections C]   (1 vs 2 processes)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
missing=()
for tool in nginx wrk htpasswd; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq nginx wrk apache2-utils >/dev/null
fi
script=bench/bench.py
if [ "${1:-}" = --scaleout ]; then script=bench/scaleout.py; shift; fi
PATH="$PATH:/usr/sbin" exec .venv/bin/python "$script" "$@"
