#!/usr/bin/env bash
# Installs everything the tests need, then runs the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/ruff check addon certs tests bench
.venv/bin/ruff format --check addon certs tests bench
.venv/bin/mypy addon
.venv/bin/python -m pytest "$@"
