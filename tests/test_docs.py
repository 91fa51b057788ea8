"""The README is what a newcomer reads first, and the docs it points to are there: links resolve,
the two commands are the ones CI runs, and the minimal production config loads."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from kube_front_proxy.config.runtime import build_runtime
from tests.support.processes import REPO

README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md"))]
_LINK = re.compile(r"\]\(([^)\s]+)\)")
_FENCE = re.compile(r"^```")


def _prose(page: Path) -> list[str]:
    """The page's lines outside code blocks."""
    lines, fenced = [], False
    for line in page.read_text().splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    found: set[str] = set()
    for line in _prose(page):
        if heading := re.match(r"#{1,6} (.*)", line):
            slug = re.sub(r"[^\w\- ]", "", heading[1].strip().lower()).replace(" ", "-")
            n = 0
            while (anchor := slug if n == 0 else f"{slug}-{n}") in found:
                n += 1
            found.add(anchor)
    return found


def test_the_readme_is_short() -> None:
    assert README.stat().st_size < 15_000, "README.md: move reference material to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for line in _prose(page):
        for target in _LINK.findall(line):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{target}: no such file")
            elif anchor and anchor not in _anchors(file):
                broken.append(f"{target}: no heading with that anchor in {file.name}")
    assert broken == [], page.name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_docs_file_named_exists(page: Path) -> None:
    named = set(re.findall(r"\bdocs/[\w./-]+\w", page.read_text()))
    assert {n for n in named if not (REPO / n).exists()} == set()


def test_the_readme_s_two_commands_are_what_ci_runs() -> None:
    block = README.read_text().split("## Two commands", 1)[1].split("```sh\n", 1)[1]
    commands = [line.split()[0] for line in block.split("```", 1)[0].splitlines()]
    assert commands == ["scripts/demo.sh", "scripts/test.sh"]
    for command in commands:
        assert os.access(REPO / command, os.X_OK), command
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert "scripts/test.sh" in ci, ".ci/run must run the README's test command"


def test_the_readme_s_minimal_production_config_loads(pki: Path, tmp_path: Path) -> None:
    """The config of "A minimal production config", with a kubeadm-shaped PKI, an htpasswd file
    and the README's users.yaml where it says they are."""
    section = README.read_text().split("## A minimal production config", 1)[1].split("\n## ", 1)[0]
    config, users = re.findall(r"```yaml\n(.*?)```", section, re.S)[:2]
    root = tmp_path / "etc" / "kube-front-proxy"
    root.mkdir(parents=True)
    for name, source in {
        "serving.crt": "proxy-server.crt",
        "serving.key": "proxy-server.key",
        "ca.crt": "ca.crt",
        "front-proxy-client.crt": "front-proxy-client.crt",
        "front-proxy-client.key": "front-proxy-client.key",
    }.items():
        shutil.copy(pki / source, root / name)
    shutil.copy(REPO / "config" / "htpasswd", root / "htpasswd")
    (root / "users.yaml").write_text(users)
    path = root / "config.yaml"
    path.write_text(re.sub(r"(?m)(: )/", rf"\g<1>{tmp_path}/", config))

    runtime = build_runtime(path)

    s = runtime.settings
    assert (s.listen_host, s.listen_port) == ("0.0.0.0", 8443)
    assert s.metrics_listen == ("127.0.0.1", 9095)
    assert s.audit is not None and s.audit.path == tmp_path / "var/log/kube-front-proxy/audit.log"
    assert runtime.login.identities["alice"].groups == ("developers",)


def _layout_block() -> list[str]:
    text = (REPO / "docs" / "development.md").read_text()
    start = text.index("```\naddon/k8s_auth.py")
    return text[start : text.index("```", start + 3)].splitlines()


def test_the_layout_names_every_module_under_its_package() -> None:
    """docs/development.md's tree is the map a newcomer walks: a module added, moved or renamed
    without it fails here (seam/'s modules are in the generated patch list instead)."""
    package = REPO / "addon" / "kube_front_proxy"
    listed: set[str] = set()
    room = ""
    for line in _layout_block():
        indent = len(line) - len(line.lstrip())
        first = line.strip().split("  ")[0]
        if indent == 2 and first.endswith("/"):
            room = first
        elif indent == 2:
            room = ""
        if indent in (2, 4):
            names = re.findall(r"[a-z_0-9]+\.py", first)
            listed |= {room + n if indent == 4 else n for n in names}
    actual = {
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") and p.parent.name != "seam"
    }
    assert sorted(actual - listed) == [], "modules missing from docs/development.md's layout"
    assert sorted(listed - actual) == [], "docs/development.md's layout names modules that are gone"


def test_the_tests_layout_names_every_support_module() -> None:
    """The list of tests/support/ in docs/development.md is where a test author looks for a
    helper before writing one: a module added, moved or renamed without it fails here."""
    text = (REPO / "docs" / "development.md").read_text()
    start = text.index("```\ntests/conftest.py")
    listed: set[str] = set()
    for line in text[start : text.index("```", start + 3)].splitlines():
        if line.startswith("  ") and not line.startswith("   "):
            listed |= set(re.findall(r"[a-z_0-9]+\.py", line.strip().split("  ")[0]))
    actual = {p.name for p in (REPO / "tests" / "support").glob("*.py") if p.name != "__init__.py"}
    assert sorted(actual - listed) == [], "tests/support/ modules missing from docs/development.md"
    assert sorted(listed - actual) == [], (
        "docs/development.md names tests/support/ modules that are gone"
    )
