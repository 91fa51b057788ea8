"""config.yaml's declarations (config/schema.py): unknown keys refused in every section, every
problem of a file told at once, and the JSON Schema and the docs' key table generated from them.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from kube_front_proxy.config.declare import sections
from kube_front_proxy.config.errors import ConfigError, ConfigErrors
from kube_front_proxy.config.reference import DOCS_FILE, SCHEMA_FILE, docs_with_table, json_schema
from kube_front_proxy.config.schema import ConfigFile
from kube_front_proxy.config.settings import load_settings
from tests.support.configs import write_yaml
from tests.support.processes import REPO

# Every section of config.yaml set, every key given (not its default): what the unknown-key walk
# below adds to, and what both the proxy and the JSON Schema must accept.
EVERY_SECTION: dict[str, Any] = {
    "listen": {"host": "0.0.0.0", "port": 9443, "allow_public_clients": False,
               "reuse_port": True},
    "serving": {"cert": "serving.crt", "key": "serving.key"},
    "upstream": {
        "servers": ["https://10.0.0.1:6443", "https://10.0.0.2:6443"],
        "ca": "ca.crt", "server_name": "kubernetes",
        "client_cert": "front-proxy.crt", "client_key": "front-proxy.key",
        "balance": "round_robin",
        "health_check": {"interval_seconds": 3, "timeout_seconds": 1, "path": "/livez"},
        "eject_seconds": 5, "retries": 2, "check_cluster_trust": False,
        "response_timeout_seconds": 30,
    },
    "identity": {
        "mode": "front-proxy", "allow_client_impersonation": True,
        "username_headers": ["X-Remote-User"], "group_headers": ["X-Remote-Group"],
        "extra_headers_prefixes": ["X-Remote-Extra-"], "uid_headers": [],
    },
    "authn": {
        "htpasswd": "htpasswd", "tokens": "tokens.csv", "token_hashes": True,
        "client_ca": "clients.crt",
        "oidc": {
            "issuer_url": "https://idp.example/realms/k", "audiences": ["kubernetes"],
            "ca": "idp.crt", "jwks_file": "jwks.json", "username_claim": "email",
            "username_prefix": "-", "groups_claim": "groups", "groups_prefix": "oidc:",
            "required_claims": {"hd": "example.com"}, "signing_algs": ["RS256", "ES256"],
            "refresh_min_interval_seconds": 30,
        },
        "session_tokens": {"signing_key_file": "session.key", "ttl_seconds": 3600,
                           "revocation_file": "revoked.yaml"},
        "order": ["x509", "token", "session-token", "oidc", "htpasswd"],
        "users": "users.yaml", "realm": "cluster",
        "cache": {"ttl_seconds": 60, "max_entries": 500},
        "lockout": {"per_address": 20, "per_user_and_address": 5, "per_user": 50,
                    "per_address_past_user_budget": 2, "max_tracked": 1000},
    },
    "reload": {"interval_seconds": 5},
    "metrics": {"listen": "[::1]:9095", "per_user": True},
    "audit": {
        "path": "audit.log", "max_size_mb": 50, "max_backups": 3,
        "refused_per_address_per_minute": 10, "refused_per_minute": 100,
        "sessions_dir": "casts", "sessions_max_mb": 10, "sessions_required": True,
    },
    "upgrades": {"keep_messages": True},
    "connections": {"idle_timeout_seconds": 3600, "max_total": 100, "max_per_client": 10},
    "limits": {
        "max_request_header_kb": 32, "max_request_body_mb": 5, "max_websocket_message_mb": 8,
        "handshake_timeout_seconds": 5, "request_header_timeout_seconds": 5,
        "keepalive_timeout_seconds": 60, "http2_resets_per_minute": 50,
        "http2_stream_buffer_kb": 256, "http2_connection_buffer_kb": 2048,
    },
    "state": {"redis": {"url": "rediss://redis.example:6380/2", "ca": "redis-ca.crt",
                        "password_file": "redis-password", "key_prefix": "fleet",
                        "timeout_seconds": 0.5, "revoked_when_unavailable": False}},
}  # fmt: skip

SECTIONS = [name for name, _ in sections(ConfigFile)]


def errors_of(path: Path) -> list[ConfigError]:
    with pytest.raises(ConfigError) as e:
        load_settings(path)
    return list(e.value.problems) if isinstance(e.value, ConfigErrors) else [e.value]


def schema_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text())
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_the_full_config_sets_every_key_of_every_section(tmp_path: Path) -> None:
    settings = load_settings(write_yaml(tmp_path / "config.yaml", EVERY_SECTION))
    assert settings.redis and settings.oidc and settings.session_tokens and settings.audit
    for name, section in sections(ConfigFile):
        data = EVERY_SECTION
        for part in filter(None, name.split(".")):
            data = data[part]
        # upstream.token_file is impersonation mode's (tests/test_impersonation_mode.py).
        assert set(section.model_fields) - set(data) <= {"token_file"}, name
    assert not list(schema_validator().iter_errors(EVERY_SECTION))


@pytest.mark.parametrize("section", SECTIONS, ids=lambda name: name or "top level")
def test_every_section_refuses_an_unknown_key(tmp_path: Path, section: str) -> None:
    """Not one section may take a key it does not declare: a typo never falls back to a
    default. The walk covers every section declared, so a new one is covered as it comes."""
    config = copy.deepcopy(EVERY_SECTION)
    data = config
    for part in filter(None, section.split(".")):
        data = data[part]
    data["no_such_key"] = 1
    path = write_yaml(tmp_path / "config.yaml", config)
    problems = errors_of(path)
    key = f"{section}.no_such_key" if section else "no_such_key"
    assert [(p.file, p.key, p.message) for p in problems] == [(str(path), key, "unknown key")]
    assert not schema_validator().is_valid(config)


def test_sections_walked_are_all_of_them() -> None:
    assert {
        "",
        "listen",
        "upstream.health_check",
        "authn.oidc",
        "authn.session_tokens",
        "authn.cache",
        "authn.lockout",
        "audit",
        "limits",
        "state.redis",
    } <= set(SECTIONS)


def test_every_problem_of_a_file_is_told_at_once(tmp_path: Path) -> None:
    config = copy.deepcopy(EVERY_SECTION)
    config["listen"]["prot"] = 8443  # a typo
    config["limits"]["max_request_body_mb"] = "3"  # quoted
    config["authn"]["lockout"]["per_user"] = 0  # out of range
    path = write_yaml(tmp_path / "config.yaml", config)
    with pytest.raises(ConfigErrors) as e:
        load_settings(path)
    assert [(p.key, p.message) for p in e.value.problems] == [
        ("listen.prot", "unknown key"),
        ("authn.lockout.per_user", "must be at least 1"),
        ("limits.max_request_body_mb", "must be an integer, not a string"),
    ]
    lines = str(e.value).splitlines()
    assert lines == [f"{path}: {p.key}: {p.message}" for p in e.value.problems]


def test_rules_between_keys_are_told_with_the_other_sections_problems(tmp_path: Path) -> None:
    config = copy.deepcopy(EVERY_SECTION)
    config["audit"]["max_backups"] = 0  # a rule of the audit section's keys together
    config["upstream"]["servers"].append("https://10.0.0.1:6443")  # listed twice
    config["state"]["redis"]["timeout_seconds"] = 11
    keys = [p.key for p in errors_of(write_yaml(tmp_path / "config.yaml", config))]
    assert keys == ["upstream.servers[2]", "audit.max_backups", "state.redis.timeout_seconds"]


def test_committed_schema_is_what_the_declarations_give() -> None:
    assert SCHEMA_FILE.read_text() == json_schema(), (
        "config/config.schema.json is stale: python -m kube_front_proxy.config --write"
    )


def test_docs_key_table_is_what_the_declarations_give() -> None:
    text = DOCS_FILE.read_text()
    assert text == docs_with_table(text), (
        "docs/configuration.md's key table is stale: python -m kube_front_proxy.config --write"
    )


def example_configs() -> dict[str, Any]:
    """Every config.yaml the repository shows: config/, the deploy ConfigMaps, the README's."""
    configs = sorted((REPO / "config").glob("config*.yaml"))
    found = {str(p.relative_to(REPO)): yaml.safe_load(p.read_text()) for p in configs}
    for manifest in sorted((REPO / "deploy").rglob("configmap*.yaml")):
        data = yaml.safe_load(manifest.read_text())["data"]
        if "config.yaml" in data:
            found[str(manifest.relative_to(REPO))] = yaml.safe_load(data["config.yaml"])
    readme = (REPO / "README.md").read_text().split("## A minimal production config", 1)[1]
    found["README.md"] = yaml.safe_load(re.search(r"```yaml\n(.*?)```", readme, re.S)[1])
    return found


@pytest.mark.parametrize("name", sorted(example_configs()))
def test_examples_validate_against_the_schema(name: str) -> None:
    config = example_configs()[name]
    assert not [e.message for e in schema_validator().iter_errors(config)]
    # A typo in a key is what the schema is for: the editor flags it.
    misspelt = copy.deepcopy(config)
    misspelt["listen"] = {**misspelt.get("listen", {}), "prot": 8443}
    assert not schema_validator().is_valid(misspelt)


def test_config_files_name_their_schema() -> None:
    for path in (REPO / "config").glob("config*.yaml"):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=./config.schema.json", path


def test_the_demo_config_loads(tmp_path: Path) -> None:
    settings = load_settings(REPO / "config" / "config.yaml")
    assert settings.upstream.servers[0].url == "https://127.0.0.1:6443"


def test_keys_and_sections_of_the_wrong_kind(tmp_path: Path) -> None:
    config = copy.deepcopy(EVERY_SECTION)
    config["upgrades"] = 5
    config["authn"]["cache"][300] = "ttl"  # YAML's keys may be numbers: never a key here
    problems = errors_of(write_yaml(tmp_path / "config.yaml", config))
    assert [(p.key, p.message) for p in problems] == [
        ("authn.cache.300", "unknown key"),
        ("upgrades", "must be a mapping, not an integer"),
    ]
