#!/usr/bin/env bash
# Regenerates requirements.lock (runtime) and requirements-test.lock (runtime + test tools)
# from pyproject.toml: exact versions with hashes, for Python 3.12 on any platform.
#   scripts/lock.sh [--upgrade]
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
.venv/bin/python -m venv "$tools"
"$tools/bin/pip" install --quiet pip-tools
compile=("$tools/bin/pip-compile" --quiet --generate-hashes --strip-extras --allow-unsafe
         --no-emit-index-url --no-emit-find-links "$@")
"${compile[@]}" --output-file requirements.lock pyproject.toml
"${compile[@]}" --extra test --output-file requirements-test.lock pyproject.toml
