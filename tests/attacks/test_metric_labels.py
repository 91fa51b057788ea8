"""Metric labels: nothing a client sends becomes a label value.

Each label value is a series that lives as long as the process. The verb label was the request
method as sent, for requests that never logged in too, and the login-failure reason quoted the
Authorization scheme: random methods and schemes grew /metrics without bound (random
2,000-character methods made it 65 MB). Now every label comes from a closed set
(observe/metric_labels.py): unknown methods are `other`, reasons are fixed phrases, and the `user`
label (metrics.per_user) names logged-in users only.
"""

from __future__ import annotations

import random
import string
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from kube_front_proxy.authn.login import REASONS
from kube_front_proxy.config.schema import AUTHENTICATORS
from kube_front_proxy.observe import metric_labels
from tests.support.harness import start_emulator, start_proxy_for
from tests.support.processes import free_port
from tests.support.users import basic_header, password_of

TOKEN_CHARS = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"


def _token(rng: random.Random, longest: int) -> str:
    return "".join(rng.choices(TOKEN_CHARS, k=rng.randint(1, longest)))


def _path(rng: random.Random) -> str:
    parts = [_token(rng, 40) for _ in range(rng.randint(1, 6))]
    prefix = rng.choice(["", "/api/v1", "/apis/apps/v1", "/api/v1/watch", "/apis/x/v1/proxy"])
    return prefix + "/" + "/".join(parts)


def test_random_methods_paths_users_and_schemes_do_not_grow_metrics(
    pki: Path, tmp_path: Path
) -> None:
    emulator = start_emulator(pki, tmp_path / "emulator")
    metrics_port = free_port()
    proxy = start_proxy_for(
        pki, tmp_path / "proxy", emulator.port,
        metrics={"listen": f"127.0.0.1:{metrics_port}", "per_user": True},
    )  # fmt: skip
    rng = random.Random(13)
    sent: set[str] = set()
    try:
        alice = basic_header("alice", password_of("alice"))
        # Logged in: the API server answers whatever the method and path.
        for _ in range(60):
            method = _token(rng, 2000)
            sent.add(method)
            proxy.raw(method, _path(rng), [alice])
        # Not logged in: random methods, random user names, random schemes and tokens; from
        # other addresses, so that lock-outs do not stop the attack short.
        for i in range(240):
            method, user = _token(rng, 2000), _token(rng, 60)
            sent |= {method, user}
            authorization = rng.choice([
                basic_header(user, "wrong")[1],
                f"{_token(rng, 30)} {_token(rng, 30)}",
                f"Bearer {_token(rng, 200)}",
            ])  # fmt: skip
            sent.add(authorization.split(" ")[0])
            proxy.raw(method, _path(rng), [("Authorization", authorization)], source=f"127.0.1.{i}")
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics").read().decode()
    finally:
        proxy.process.stop()
        emulator.process.stop()

    allowed = {
        "verb": metric_labels.VERBS | {"other"},
        "code": {str(c) for c in range(100, 600)},
        "authenticator": set(AUTHENTICATORS) | {"none"},
        "user": {"alice", ""},
        "reason": REASONS,
        "result": {"ok", "refused"},
        # The bounded stores' names, fixed in the addon (kube_front_proxy_held_entries).
        "store": {
            "client_connections",
            "lingering_close",
            "session_message_log",
            "session_recordings",
            "credential_cache",
            "lockout_per_address",
            "lockout_per_user_and_address",
            "lockout_per_user",
            "lockout_per_address_past_user_budget",
        },
    }
    values: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for name, value in sample.labels.items():
                if name not in ("le", "quantile"):
                    values.setdefault(name, set()).add(value)
    for name, seen in values.items():
        unexpected = [value[:40] for value in sorted(seen - allowed[name])[:5]]
        assert not unexpected, f"{name}: {unexpected}"
    assert not values["verb"] & sent
    assert "other" in values["verb"]  # the random methods were counted, under one value
    assert values["user"] == {"alice", ""}
    assert len(text) < 60_000, len(text)
