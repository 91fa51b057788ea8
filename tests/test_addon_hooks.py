"""The mitmproxy hooks in-process: fail closed, refuse foreign listeners, never log secrets."""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.addons.block import Block
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from kube_front_proxy.addon import K8sAuth
from kube_front_proxy.upstream.trust_gate import CLIENT_MESSAGE
from tests.support.configs import htpasswd_add, proxy_config, write_yaml

UNAUTHORIZED = (
    b'{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",'
    b'"message":"Unauthorized","reason":"Unauthorized","code":401}\n'
)


@pytest.fixture
def addon(tmp_path: Path, pki: Path) -> Iterator[K8sAuth]:
    htpasswd_add(tmp_path / "htpasswd", "alice", "alice-pw", "apr1")
    write_yaml(tmp_path / "users.yaml", {"users": {"alice": {"groups": ["dev"]}}})
    # No API server here for the cluster trust check (upstream/trust_gate.py): the gate is tested
    # below.
    settings = proxy_config(pki, 6443, 18443, upstream={"check_cluster_trust": False})
    config = write_yaml(tmp_path / "config.yaml", settings)
    k8s_auth = K8sAuth()
    with taddons.context(Proxyserver(), Block(), k8s_auth) as tctx:
        tctx.configure(k8s_auth, k8s_auth_config=str(config))
        yield k8s_auth


def request(addon: K8sAuth, *headers: tuple[str, str], mode: str | None = None) -> tflow.HTTPFlow:
    flow = tflow.tflow()
    assert addon.runtime
    flow.client_conn.proxy_mode = ProxyMode.parse(mode or addon.runtime.mode)
    flow.request.headers.clear()
    for name, value in headers:
        flow.request.headers.add(name, value)
    return flow


def basic(user: str, password: str) -> tuple[str, str]:
    return ("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())


async def test_login_sets_identity_and_strips_spoofing(addon: K8sAuth) -> None:
    flow = request(addon, basic("alice", "alice-pw"), ("x-remote-user", "admin"),
                   ("X-Remote-Group", "system:masters"), ("Accept", "*/*"))  # fmt: skip
    await addon.requestheaders(flow)
    assert flow.response is None
    assert flow.request.headers.fields == (
        (b"Accept", b"*/*"),
        (b"X-Remote-User", b"alice"),
        (b"X-Remote-Group", b"dev"),
        (b"X-Forwarded-For", b"127.0.0.1"),  # the TCP peer (client/address.py)
        (b"Host", b"127.0.0.1:6443"),  # the chosen API server (upstream/routing.py)
    )
    assert flow.metadata == {
        "k8s_user": "alice",
        "k8s_groups": ["dev"],
        "k8s_authenticator": "htpasswd",
    }
    assert flow.comment == "user alice"


async def test_nothing_is_served_while_the_trust_gate_is_closed(addon: K8sAuth) -> None:
    addon.trust.wait_for_check()
    flow = request(addon, basic("alice", "alice-pw"), ("Accept", "*/*"))
    await addon.requestheaders(flow)
    assert flow.response and flow.response.status_code == 503
    assert json.loads(flow.response.content or b"")["message"] == CLIENT_MESSAGE
    assert flow.request.headers.fields == ((b"Accept", b"*/*"),)  # the password is gone
    assert "k8s_user" not in flow.metadata
    addon.trust.open()
    flow = request(addon, basic("alice", "alice-pw"))
    await addon.requestheaders(flow)
    assert flow.response is None and flow.metadata["k8s_user"] == "alice"


@pytest.mark.parametrize(
    "headers",
    [
        (),
        (basic("alice", "wrong"),),
        (basic("mallory", "alice-pw"),),
        (("Authorization", "Basic %%%"),),
        (("Authorization", "Bearer token"),),
    ],
)
async def test_failed_login_is_a_401_status(
    addon: K8sAuth, headers: tuple[tuple[str, str], ...]
) -> None:
    flow = request(addon, *headers, ("X-Remote-User", "admin"))
    await addon.requestheaders(flow)
    assert flow.response is not None
    assert flow.response.status_code == 401
    assert flow.response.content == UNAUTHORIZED
    assert flow.response.headers["WWW-Authenticate"] == 'Basic realm="kubernetes"'
    assert flow.response.headers["Content-Type"] == "application/json"
    # The attempt's credentials do not stay in the flow (mitmweb, saved flow files).
    assert "Authorization" not in flow.request.headers
    assert flow.metadata["k8s_refused"]


@pytest.mark.parametrize("broken", ["login", "writer"])
async def test_an_internal_error_fails_closed(
    addon: K8sAuth, monkeypatch: pytest.MonkeyPatch, broken: str
) -> None:
    def explode(*_: object) -> None:
        raise RuntimeError("injected fault")

    assert addon.runtime
    if broken == "login":
        monkeypatch.setattr(addon.runtime.login, "authenticate", explode)
    else:
        monkeypatch.setattr(addon.runtime.writer, "apply", explode)
    flow = request(addon, basic("alice", "alice-pw"), ("X-Remote-User", "admin"))
    await addon.requestheaders(flow)
    # A response set here means mitmproxy answers the client and never forwards the request.
    assert flow.response is not None and flow.response.status_code == 500
    assert b'"kind":"Status"' in flow.response.content


async def test_requests_on_other_listeners_are_refused(addon: K8sAuth) -> None:
    flow = request(addon, basic("alice", "alice-pw"), mode="regular@8080")
    addon.client_connected(flow.client_conn)
    assert flow.client_conn.error
    await addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 503
    assert "X-Remote-User" not in flow.request.headers


async def test_unconfigured_addon_refuses_everything() -> None:
    k8s_auth = K8sAuth()
    with taddons.context(k8s_auth):
        flow = tflow.tflow()
        flow.request.headers["X-Remote-User"] = "admin"
        await k8s_auth.requestheaders(flow)
        assert flow.response is not None and flow.response.status_code == 503


async def test_passwords_never_logged(addon: K8sAuth, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for headers in [basic("alice", "Hunter2-secret"), basic("Hunter3-secret", "x:y")]:
        await addon.requestheaders(request(addon, headers))
    assert "Hunter2-secret" not in caplog.text
    assert "wrong password" in caplog.text
    # An unknown user name is logged as claimed (it is not a secret of a real account).
    assert "unknown user" in caplog.text


async def test_the_config_decides_the_mitmproxy_options(addon: K8sAuth) -> None:
    from mitmproxy import ctx

    assert addon.runtime
    assert ctx.options.mode == [addon.runtime.mode]
    assert ctx.options.connection_strategy == "lazy"
    # Clients come from anywhere, and every request must log in: mitmproxy's guard for open
    # forward proxies would refuse them.
    assert ctx.options.block_global is False
    for change in ({"mode": ["regular"]}, {"connection_strategy": "eager"}, {"block_global": True}):
        with pytest.raises(exceptions.OptionsError, match="cannot be changed"):
            ctx.options.update(**change)


async def test_locked_out_attempts_run_no_hash(
    addon: K8sAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert addon.runtime
    htpasswd = addon.runtime.login.htpasswd
    calls = []
    real_verify = htpasswd.verify

    def counting(user: str, password: str) -> bool:
        calls.append(user)
        return real_verify(user, password)

    monkeypatch.setattr(htpasswd, "verify", counting)
    budget = addon.runtime.settings.lockout.per_user_and_address
    for i in range(budget):
        flow = request(addon, basic("alice", f"wrong-{i}"))
        await addon.requestheaders(flow)
        assert flow.response is not None and flow.response.status_code == 401
    flow = request(addon, basic("alice", "alice-pw"))
    await addon.requestheaders(flow)
    assert flow.response is not None and flow.response.status_code == 429
    # One more try per 24 h / budget: too long for client-go to wait in its retry loop.
    assert "Retry-After" not in flow.response.headers
    assert f'"retryAfterSeconds":{86400 // budget}' in flow.response.text
    assert len(calls) == budget
    assert flow.metadata["k8s_refused"] == "locked out"


@pytest.mark.parametrize("keep", [False, True])
async def test_upgraded_connections_do_not_hoard_relayed_messages(
    addon: K8sAuth, keep: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert addon.runtime
    settings = dataclasses.replace(addon.runtime.settings, keep_upgraded_messages=keep)
    monkeypatch.setattr(addon, "runtime", dataclasses.replace(addon.runtime, settings=settings))
    ws = tflow.twebsocketflow()
    raw = tflow.ttcpflow()
    assert ws.websocket and len(ws.websocket.messages) > 1 and len(raw.messages) > 1
    counts = (len(ws.websocket.messages), len(raw.messages))
    last = (ws.websocket.messages[-1], raw.messages[-1])
    addon.websocket_message(ws)
    addon.tcp_message(raw)
    if keep:
        assert (len(ws.websocket.messages), len(raw.messages)) == counts
    else:
        assert (ws.websocket.messages, raw.messages) == ([last[0]], [last[1]])


async def test_spdy_upgrades_need_rawtcp_which_the_addon_owns(addon: K8sAuth) -> None:
    from mitmproxy import ctx

    assert ctx.options.rawtcp is True
    with pytest.raises(exceptions.OptionsError, match="cannot be changed"):
        ctx.options.update(rawtcp=False)
