"""Static bearer tokens (kube-apiserver's --token-auth-file format), plain or as SHA-256."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from kube_front_proxy.authn.static_tokens import TokenFile
from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.settings import FileRef
from tests.support.configs import write_yaml
from tests.support.harness import Emulator, start_proxy_for
from tests.support.processes import kubectl
from tests.support.users import TOKEN, TOKENS_CSV


def ref(path: Path) -> FileRef:
    return FileRef(path, path.parent / "config.yaml", "authn.tokens")


def test_token_file(tmp_path: Path) -> None:
    (tmp_path / "tokens.csv").write_text(TOKENS_CSV)
    identities = TokenFile(ref(tmp_path / "tokens.csv"), hashed=False).identities()
    ci = identities[hashlib.sha256(TOKEN.encode()).digest()]
    assert (ci.user, ci.uid, ci.groups) == ("ci-bot", "42", ("deployers", "system:masters"))
    assert len(identities) == 2


def test_hashed_token_file(tmp_path: Path) -> None:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    (tmp_path / "tokens.csv").write_text(f"{digest},ci-bot,42\n")
    identities = TokenFile(ref(tmp_path / "tokens.csv"), hashed=True).identities()
    assert identities[bytes.fromhex(digest)].user == "ci-bot"


@pytest.mark.parametrize(
    ("text", "hashed", "message"),
    [
        (f"{TOKEN},ci-bot\n", False, "line 1: expected token,user,uid"),
        (f"{TOKEN},ci-bot,1\n{TOKEN},other,2\n", False, "line 2: the same token appears twice"),
        (f'{TOKEN},ci-bot,1,"a\rb"\n', False, "line 1: contains a control character"),
        (f"{TOKEN},ci-bot,1\n", True, "line 1: not a SHA-256"),
    ],
)
def test_token_file_errors_never_show_the_token(
    tmp_path: Path, text: str, hashed: bool, message: str
) -> None:
    (tmp_path / "tokens.csv").write_text(text)
    with pytest.raises(ConfigError) as e:
        TokenFile(ref(tmp_path / "tokens.csv"), hashed)
    assert message in str(e.value) and "authn.tokens" in str(e.value)
    assert TOKEN not in str(e.value)


def test_token_groups_need_a_group_header(tmp_path: Path) -> None:
    (tmp_path / "tokens.csv").write_text(TOKENS_CSV)
    with pytest.raises(ConfigError, match="line 1: groups cannot be sent"):
        TokenFile(ref(tmp_path / "tokens.csv"), hashed=False, can_send_groups=False)


def test_tokens_end_to_end_with_kubectl(pki: Path, emulator: Emulator, tmp_path: Path) -> None:
    (tmp_path / "tokens.csv").write_text(TOKENS_CSV)
    write_yaml(tmp_path / "bot-users.yaml", {"users": {"ci-bot": {"groups": ["extra-group"]}}})
    flows = tmp_path / "flows.mitm"
    before = len(emulator.requests())
    proxy = start_proxy_for(
        pki, tmp_path, emulator.port, "-w", str(flows),
        authn={"tokens": "tokens.csv", "htpasswd": None, "users": "bot-users.yaml"},
    )  # fmt: skip
    try:
        good = proxy.kubeconfig_with({"token": TOKEN}, "good")
        result = kubectl(good, "auth", "whoami", "-o", "json")
        assert result.returncode == 0, result.stderr
        info = json.loads(result.stdout)["status"]["userInfo"]
        assert info["username"] == "ci-bot" and info["uid"] == "42"
        assert info["groups"] == ["deployers", "system:masters", "extra-group",
                                  "system:authenticated"]  # fmt: skip
        bad = proxy.kubeconfig_with({"token": "not-a-token"}, "bad")
        result = kubectl(bad, "get", "pods")
        assert result.returncode == 1 and "You must be logged in to the server" in result.stderr
    finally:
        proxy.process.stop()
    for record in emulator.requests()[before:]:
        assert not any(n.lower() == "authorization" for n, _ in record["headers"])
    assert TOKEN.encode() not in flows.read_bytes()
    assert TOKEN not in proxy.process.output()
    assert "unknown token" in proxy.process.output()
