"""Helpers shared by the test modules, one module per job (docs/development.md lists them).

Importing the package puts certs/ (devpki) and addon/ (kube_front_proxy) on sys.path, once for
the tests, the benchmarks and `python -m tests.support.oidc_issuer`."""

from __future__ import annotations

import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
for _folder in ("addon", "certs"):
    if str(_REPO / _folder) not in sys.path:
        sys.path.insert(0, str(_REPO / _folder))
