"""Metric label values come from closed sets (observe/metric_labels.py); attack test in
tests/attacks/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from kube_front_proxy.authn.login import REASONS
from kube_front_proxy.config.schema import AUTHENTICATORS
from kube_front_proxy.observe import metric_labels
from kube_front_proxy.observe.metrics import Metrics
from tests.support.client_certs import chain, login
from tests.support.processes import REPO
from tests.support.users import basic_header

ADDON = REPO / "addon" / "kube_front_proxy"


def test_verbs_and_codes() -> None:
    assert metric_labels.verb("list") == "list"
    assert metric_labels.verb("options") == "options"
    for sent in ("", "LIST", "x" * 2000, "get\n"):
        assert metric_labels.verb(sent) == "other"
    assert [metric_labels.code(c) for c in (100, 200, 599, 99, 600, 999)] == [
        "100", "200", "599", "other", "other", "other"]  # fmt: skip


def test_reasons_are_fixed_phrases_or_one_per_authenticator() -> None:
    def label(value: str) -> str:
        return metric_labels.reason(value, REASONS, AUTHENTICATORS)

    assert label("wrong password") == "wrong password"
    both = "x509: certificate not accepted; htpasswd: wrong password"
    assert label(both) == both
    for value in ("unsupported authorization scheme 'Digest'", "mallory: wrong password",
                  "x509: anything; htpasswd: wrong password", "", "wrong password; "):  # fmt: skip
        assert label(value) == "other"


@pytest.mark.parametrize(
    ("authorization", "certificate"),
    [
        ([], None),
        ([], "other-ca"),
        ([], "injection"),
        (["Digest abc"], None),
        (["Basic !!!"], None),
        (["Basic YWxpY2U="], None),  # no colon
        (["Basic a", "Basic b"], None),
        (["Bearer "], None),
        (["Bearer some-token"], None),
        ([basic_header("alice", "wrong")[1]], None),
        ([basic_header("nobody", "wrong")[1]], None),
        ([basic_header("alice", "wrong")[1]], "server-only"),
    ],
)
async def test_every_refusal_reason_is_its_own_label(
    tmp_path: Path, authorization: list[str], certificate: str | None
) -> None:
    outcome = await login(tmp_path, ("x509", "htpasswd")).authenticate(
        authorization, "10.0.0.1", chain(certificate) if certificate else []
    )
    assert outcome.identity is None
    assert metric_labels.reason(outcome.reason, REASONS, AUTHENTICATORS) == outcome.reason


def test_every_fixed_refusal_phrase_in_the_code_is_a_known_reason() -> None:
    # A phrase added without adding it to REASONS would be counted as "other".
    phrases = set()
    for module in ("authn/credentials.py", "authn/login.py"):
        tree = ast.parse((ADDON / module).read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("MalformedCredentials", "Rejected") and node.args
                    and isinstance(node.args[0], ast.Constant)):  # fmt: skip
                phrases.add(node.args[0].value)
    assert len(phrases) > 10
    assert phrases <= REASONS, phrases - REASONS


def test_user_labels_are_capped() -> None:
    labels = metric_labels.UserLabels(limit=2)
    assert [labels(u) for u in ("alice", "bob", "carol", "alice", "dave")] == [
        "alice", "bob", "other", "alice", "other"]  # fmt: skip


def test_series_stay_bounded_whatever_the_values() -> None:
    metrics = Metrics(per_user=True)
    metrics.request_done("get", 200, "htpasswd", "alice", 0.01, 0.005)
    for i in range(3000):
        metrics.request_done(f"verb-{i}", 1000 + i, f"auth-{i}", f"user-{i}", 0.01, None)
        metrics.login_failed(f"unsupported authorization scheme 'x{i}'")
    series = {
        (m.name, tuple(sorted(s.labels.items())))
        for m in metrics.registry.collect()
        for s in m.samples
    }
    users = {dict(labels).get("user") for _, labels in series} - {None}
    assert len(users) == metric_labels.MAX_USERS + 1  # the first 1000, then "other"
    verbs = {dict(labels).get("verb") for _, labels in series} - {None}
    assert verbs == {"get", "other"}
    assert len(series) < 3 * (metric_labels.MAX_USERS + 1) + 100
