#!/usr/bin/env bash
# Creates .venv with Python >= 3.12 and installs kube-front-proxy (with test tools if asked).
#   scripts/setup.sh [--test]
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    local candidates=()
    command -v pyenv >/dev/null 2>&1 && candidates+=("$(pyenv which python 2>/dev/null || true)")
    candidates+=(python3.13 python3.12 "$HOME"/.pyenv/versions/3.1[3-9]*/bin/python
                 "$HOME"/.pyenv/versions/3.12*/bin/python python3)
    for py in "${candidates[@]}"; do
        [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
        if "$py" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            echo "$py"; return 0
        fi
    done
    echo "kube-front-proxy needs Python >= 3.12 (mitmproxy 12); none found" >&2
    return 1
}

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 12))'; then
    rm -rf .venv
    "$(find_python)" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# Exactly the tested set (requirements*.lock, hashed; scripts/lock.sh makes them), then this
# package itself without letting pip pick anything else.
lock=requirements.lock
[ "${1:-}" = "--test" ] && lock=requirements-test.lock
.venv/bin/python -m pip install --quiet --require-hashes -r "$lock"
.venv/bin/python -m pip install --quiet --no-deps -e .
if [ "${1:-}" = "--test" ]; then
    # The tests make their htpasswd files with Apache's own tool, and share lock-out counters
    # through a real redis-server (Debian's package; the tests start their own).
    missing=()
    command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
    command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
    if [ ${#missing[@]} -gt 0 ]; then
        sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi
