"""Through the proxy: `kubectl exec -it`, a TTY, over WebSocket and SPDY.

kubectl uses a TTY only when its stdin is a terminal (`k8s.io/kubectl pkg/cmd/exec/exec.go`
`SetupTTY`), so kubectl runs here on the slave side of a pty (stdin and stdout: the size comes
from stdout, `pkg/util/term/tty.go` `GetSize`), with the window size set before it starts. With
`-t` kubectl puts the terminal in raw mode (keys go out as typed: Enter is CR, ^D is a byte),
asks for `tty=true` and no stderr (a TTY merges it into stdout), and sends the terminal size on
the resize channel: channel 4 of `v5.channel.k8s.io`, or the `resize` stream over SPDY
(`k8s.io/client-go tools/remotecommand/websocket.go`, `v3.go`, `resize.go`).

The emulator runs in-process so that the test can see the sizes its pretend container received
(`Container.resizes`, width then height); its `TerminalInput` lets ^D at the start of a line end
`cat`, as the pty of a real container would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.emulator import EmulatorServer
from tests.emulator.api import API
from tests.emulator.container import Container
from tests.support.api_paths import EXEC
from tests.support.emulator_pki import kubeadm_config
from tests.support.harness import Proxy, start_proxy_for
from tests.support.terminal import COLS, ROWS, Terminal
from tests.support.upgrades import PROTOCOLS, REMOTE_COMMAND_ENV, TIMEOUT, assert_upgrade_as_alice
from tests.support.waiting import wait_until

SUBPROTOCOL = {"websocket": "v5.channel.k8s.io", "spdy": "v4.channel.k8s.io"}


@pytest.fixture(scope="module")
def api() -> API:
    return API()


@pytest.fixture(scope="module")
def apiserver(pki: Path, api: API) -> Iterator[EmulatorServer]:
    with EmulatorServer(kubeadm_config(pki), api=api) as server:
        yield server


@pytest.fixture(scope="module")
def tty_proxy(
    pki: Path, apiserver: EmulatorServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    # This API (tests.emulator.api.API) serves no kube-system ConfigMap: no trust check.
    with start_proxy_for(pki, tmp_path_factory.mktemp("proxy"), apiserver.port,
                         upstream={"check_cluster_trust": False}) as p:  # fmt: skip
        yield p


@pytest.fixture
def nginx(api: API) -> Container:
    container = api.container(api.pods[0])
    container.resizes.clear()
    return container


def tty_record(server: EmulatorServer, before: int) -> dict[str, Any]:
    [record] = [r for r in server.records()[before:] if r["path"].split("?")[0] == EXEC]
    return dict(record)


def wait_for_resizes(container: Container, count: int) -> None:
    """The sizes go out on their own goroutine, after the streams are up."""
    wait_until(lambda: len(container.resizes) >= count, TIMEOUT, lambda: container.resizes)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_exec_it_cat_echoes_the_keys_and_gets_the_terminal_size(
    tty_proxy: Proxy, apiserver: EmulatorServer, nginx: Container, protocol: str
) -> None:
    before = len(apiserver.records())
    terminal = Terminal(tty_proxy, REMOTE_COMMAND_ENV[protocol], "cat")
    terminal.wait_for_raw_mode()
    terminal.type(b"hello\r")
    terminal.read_until(b"hello\r")
    # Waited for while cat still runs: sizes that land after the process ended are dropped.
    wait_for_resizes(nginx, 1)
    assert nginx.resizes == [(COLS, ROWS)]
    # The window grows: the kernel would signal kubectl's foreground group (this pty is not its
    # controlling terminal, so the test does), and kubectl sends the new size.
    terminal.resize(ROWS + 10, COLS + 20)
    wait_for_resizes(nginx, 2)
    assert nginx.resizes == [(COLS, ROWS), (COLS + 20, ROWS + 10)]
    terminal.type(b"\x04")  # ^D at the start of a line: end of input for cat
    code, output, stderr = terminal.finish()
    assert (code, output, stderr) == (0, b"hello\r", b"")
    record = tty_record(apiserver, before)
    assert record["path"] == f"{EXEC}?command=cat&container=nginx&stdin=true&stdout=true&tty=true"
    assert_upgrade_as_alice(record, protocol, SUBPROTOCOL[protocol])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_exec_it_passes_the_exit_code_through(
    tty_proxy: Proxy, apiserver: EmulatorServer, nginx: Container, protocol: str
) -> None:
    before = len(apiserver.records())
    terminal = Terminal(tty_proxy, REMOTE_COMMAND_ENV[protocol], "sh", "-c", "cat; exit 3")
    terminal.wait_for_raw_mode()
    terminal.type(b"bye\r")
    terminal.read_until(b"bye\r")
    wait_for_resizes(nginx, 1)
    terminal.type(b"\x04")
    code, output, stderr = terminal.finish()
    assert (code, output, stderr) == (3, b"bye\r", b"command terminated with exit code 3\n")
    assert nginx.resizes == [(COLS, ROWS)]
    record = tty_record(apiserver, before)
    assert record["path"] == (
        f"{EXEC}?command=sh&command=-c&command=cat%3B+exit+3&container=nginx"
        "&stdin=true&stdout=true&tty=true"
    )
    assert_upgrade_as_alice(record, protocol, SUBPROTOCOL[protocol])
