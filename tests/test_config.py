"""A broken configuration stops start-up with one message naming the file and the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.runtime import build_runtime
from tests.support.configs import htpasswd_add, proxy_config, write_yaml


@pytest.fixture
def config_dir(tmp_path: Path) -> Path:
    htpasswd_add(tmp_path / "htpasswd", "alice", "pw", "apr1")
    write_yaml(tmp_path / "users.yaml", {"users": {"alice": {"groups": ["dev"]}}})
    return tmp_path


def load(config_dir: Path, pki: Path, **overrides: Any) -> Any:
    path = write_yaml(config_dir / "config.yaml", proxy_config(pki, 6443, 8443, **overrides))
    return build_runtime(path)


def error_of(config_dir: Path, pki: Path, **overrides: Any) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        load(config_dir, pki, **overrides)
    return e.value


def test_valid_config_loads_and_resolves_relative_paths(config_dir: Path, pki: Path) -> None:
    runtime = load(config_dir, pki)
    assert runtime.settings.htpasswd.path == config_dir / "htpasswd"
    assert runtime.mode == "reverse:https://127.0.0.1:6443@127.0.0.1:8443"
    assert runtime.login.identities["alice"].groups == ("dev",)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        build_runtime(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in str(e.value) and "cannot read" in str(e.value)


def test_invalid_yaml(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("listen: [unclosed\n")
    with pytest.raises(ConfigError, match=r"config.yaml: invalid YAML at line 2"):
        build_runtime(tmp_path / "config.yaml")


@pytest.mark.parametrize(
    ("overrides", "key", "message"),
    [
        ({"listen": {"hots": "x"}}, "listen.hots", "unknown key"),
        ({"bogus": 1}, "bogus", "unknown key"),
        ({"listen": {"port": "8443"}}, "listen.port", "must be an integer, not a string"),
        ({"listen": {"port": 70000}}, "listen.port", "between 1 and 65535"),
        ({"listen": {"allow_public_clients": "yes"}}, "listen.allow_public_clients", "true or"),
        ({"upstream": {"servers": "https://x"}}, "upstream.servers", "must be a list"),
        ({"upstream": {"servers": ["http://x:6443"]}}, "upstream.servers[0]", "https://"),
        ({"upstream": {"servers": []}}, "upstream.servers", "must list at least one"),
        ({"upstream": {"ca": None}}, "upstream.ca", "missing"),
        ({"upstream": {"ca": "absent.crt"}}, "upstream.ca", "cannot read"),
        ({"serving": None}, "serving", "missing"),
        ({"identity": {"username_headers": []}}, "identity.username_headers", "at least one"),
        ({"identity": {"group_headers": ["X Group"]}}, "identity.group_headers[0]", "header name"),
        ({"identity": {"uid_headers": [1]}}, "identity.uid_headers[0]", "must be a string"),
        ({"authn": {"realm": 'a"b'}}, "authn.realm", "quotes"),
        ({"authn": {"lockout": {"per_user": 0}}}, "authn.lockout.per_user", "at least 1"),
        ({"authn": {"lockout": {"first_seconds": 1}}}, "authn.lockout.first_seconds", "replaced"),
        ({"authn": {"lockout": {"max_secs": 1}}}, "authn.lockout.max_secs", "unknown key"),
        ({"authn": {"cache": {"ttl_seconds": -1}}}, "authn.cache.ttl_seconds", "must be 0 or more"),
        ({"reload": {"interval_seconds": -1}}, "reload.interval_seconds", "must be 0 or more"),
        ({"metrics": {"listen": "9095"}}, "metrics.listen", "HOST:PORT"),
        ({"authn": {"htpasswd": None}}, "authn.htpasswd", "at least one of htpasswd, tokens"),
        ({"authn": {"order": ["htpasswd", "ldap"]}}, "authn.order[1]", "must be x509, token"),
        ({"authn": {"order": ["htpasswd", "x509"]}}, "authn.order[1]", "x509 is listed but not"),
        ({"authn": {"order": ["htpasswd", "htpasswd"]}}, "authn.order[1]", "listed twice"),
        ({"authn": {"tokens": "t.csv", "order": ["htpasswd"]}}, "authn.order", "not listed: token"),
        ({"connections": {"idle_timeout_seconds": 0}}, "connections.idle_timeout_seconds", "at"),
        ({"connections": {"max_per_client": 0}}, "connections.max_per_client", "at least 1"),
        ({"metrics": {"per_user": "yes"}}, "metrics.per_user", "true or false"),
        ({"audit": {"path": "a.log", "max_backups": 0}}, "audit.max_backups", "at least 1"),
        ({"audit": {"max_size_mb": 1}}, "audit.path", "missing"),
        ({"audit": {"sessions_dir": "s"}}, "audit.path", "missing"),
        (
            {"audit": {"path": "a.log", "sessions_dir": "s", "sessions_max_mb": 0}},
            "audit.sessions_max_mb",
            "at least 1",
        ),
        (
            {"audit": {"path": "a.log", "sessions_required": True}},
            "audit.sessions_required",
            "needs audit.sessions_dir",
        ),
        (
            {"audit": {"path": "a.log", "sessions_required": "yes"}},
            "audit.sessions_required",
            "true or false",
        ),
    ],
)
def test_config_errors_name_file_and_key(
    config_dir: Path, pki: Path, overrides: dict[str, Any], key: str, message: str
) -> None:
    error = error_of(config_dir, pki, **overrides)
    assert error.file == str(config_dir / "config.yaml")
    assert error.key == key
    assert message in str(error)


def test_unreadable_certificate(config_dir: Path, pki: Path) -> None:
    garbage = config_dir / "garbage.crt"
    garbage.write_text("not a certificate")
    error = error_of(config_dir, pki, upstream={"client_cert": str(garbage)})
    assert error.key == "upstream.client_cert" and "not a PEM certificate" in str(error)


def test_key_that_does_not_match_its_certificate(config_dir: Path, pki: Path) -> None:
    error = error_of(config_dir, pki, serving={"key": str(pki / "apiserver.key")})
    assert error.key == "serving.key" and "does not match the certificate" in str(error)


def test_unreadable_key_file(config_dir: Path, pki: Path) -> None:
    error = error_of(config_dir, pki, upstream={"client_key": str(config_dir)})
    assert error.key == "upstream.client_key" and "cannot read" in str(error)


@pytest.mark.parametrize(
    ("users", "key", "message"),
    [
        ({"users": {"alice": {"groups": ["dev\r\nX-Remote-User: admin"]}}}, "users.alice.groups[0]",
         "control character"),
        ({"users": {"alice": {"uid": "1\n2"}}}, "users.alice.uid", "control character"),
        ({"users": {"alice": {"uid": 1001}}}, "users.alice.uid", "must be a string"),
        ({"users": {"alice": {"extra": {"k": ["a\x00b"]}}}}, "users.alice.extra.k[0]",
         "control character"),
        ({"users": {"alice": {"groups": [" dev"]}}}, "users.alice.groups[0]", "whitespace"),
        ({"users": {"alice": {"groups": [""]}}}, "users.alice.groups[0]", "empty group"),
        ({"users": {"alice": {"group": ["dev"]}}}, "users.alice.group", "unknown key"),
        ({"users": {"alice": {"extra": {"k": "v"}}}}, "users.alice.extra.k", "must be a list"),
    ],
)  # fmt: skip
def test_users_file_errors(
    config_dir: Path, pki: Path, users: dict[str, Any], key: str, message: str
) -> None:
    write_yaml(config_dir / "users.yaml", users)
    error = error_of(config_dir, pki)
    assert error.file == str(config_dir / "users.yaml")
    assert error.key == key
    assert message in str(error)


def test_values_that_need_a_header_list_that_is_empty(config_dir: Path, pki: Path) -> None:
    write_yaml(config_dir / "users.yaml", {"users": {"alice": {"uid": "7"}}})
    error = error_of(config_dir, pki, identity={"uid_headers": []})
    assert error.key == "users.alice.uid" and "uid_headers is empty" in str(error)


def test_user_without_users_entry_gets_name_only(config_dir: Path, pki: Path) -> None:
    htpasswd_add(config_dir / "htpasswd", "carol", "pw", "sha512")
    runtime = load(config_dir, pki, authn={"users": None})
    carol = runtime.login.identities["carol"]
    assert (carol.user, carol.groups, carol.uid, dict(carol.extra)) == ("carol", (), "", {})


@pytest.mark.parametrize(
    ("redis", "key", "message"),
    [
        ({}, "state.redis.url", "missing"),
        ({"url": "http://redis:6379"}, "state.redis.url", "redis://, rediss:// or unix://"),
        ({"url": "redis://u:hunter2@redis:6379/0"}, "state.redis.url", "password_file"),
        ({"url": "http://u:hunter2@redis:6379/0"}, "state.redis.url", "password_file"),
        ({"url": "redis://redis:6379/x"}, "state.redis.url", "database number"),
        ({"url": "redis://redis:port/0"}, "state.redis.url", "invalid port"),
        ({"url": "unix://relative.sock"}, "state.redis.url", "absolute"),
        ({"url": "redis://redis/0", "ca": "ca.crt"}, "state.redis.ca", "only for rediss"),
        ({"url": "redis://redis/0", "timeout_seconds": 0}, "state.redis.timeout_seconds", "more"),
        ({"url": "redis://redis/0", "timeout_seconds": "1"}, "state.redis.timeout_seconds",
         "must be a number"),
        ({"url": "redis://redis/0", "key_prefix": "a b"}, "state.redis.key_prefix", "spaces"),
        ({"url": "redis://redis/0", "db": 1}, "state.redis.db", "unknown key"),
    ],
)  # fmt: skip
def test_state_redis_errors_name_the_key(
    config_dir: Path, pki: Path, redis: dict[str, object], key: str, message: str
) -> None:
    error = error_of(config_dir, pki, state={"redis": redis})
    assert error.key == key and message in str(error)
    assert "hunter2" not in str(error)


def test_state_redis_loads_and_its_files_are_watched(config_dir: Path, pki: Path) -> None:
    (config_dir / "password").write_text("pw\n")
    redis = {
        "url": "rediss://redis.example:6380/2",
        "ca": str(pki / "ca.crt"),
        "password_file": "password",
        "key_prefix": "fleet-1",
        "timeout_seconds": 0.05,
    }
    runtime = load(config_dir, pki, state={"redis": redis})
    s = runtime.settings.redis
    assert (s.url, s.key_prefix, s.timeout) == ("rediss://redis.example:6380/2", "fleet-1", 0.05)
    assert s.revoked_when_unavailable
    assert {pki / "ca.crt", config_dir / "password"} <= set(runtime.watched_files)
    assert runtime.shared is not None
    assert runtime.login.lockout.store.link is runtime.shared.link
    # A reload that changes nothing keeps the link (and what this process knows); a new
    # password makes a new one.
    config = config_dir / "config.yaml"
    assert build_runtime(config, runtime).shared is runtime.shared
    (config_dir / "password").write_text("pw2\n")
    assert build_runtime(config, runtime).shared is not runtime.shared
    plain = load(config_dir, pki, state={"redis": {"url": "unix:///run/redis.sock?db=3"}})
    assert plain.shared is not None and load(config_dir, pki).shared is None
