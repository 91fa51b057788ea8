"""Lock-out as a weapon, and a brute-force budget that starts over.

Before: ten wrong passwords for alice from anywhere got alice's own right (even remembered)
password refused with a 429 from every address, again and again; and a successful login of any
user from an address reset that address's failure count, so an attacker with an account of his
own was never slowed down. Now (authn/lockout.py) the strict budgets are per address and per (user,
address); the budget per user name only limits where its passwords are still checked from, so
an address with no failures always gets its user in; and only a user's own success clears her
own (user, address) count. Attackers come from 127.0.x.y: the proxy sees each as its own client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.configs import htpasswd_add, write_yaml
from tests.support.harness import Emulator, Proxy, start_proxy_for
from tests.support.users import basic_header

# apr1 hashes: hundreds of wrong passwords take seconds, not minutes of bcrypt. (Unknown user
# names are checked against the file's first hash, so they are cheap too.)
PASSWORDS = {"alice": "alice-Passw0rd", "bob": "bob-Passw0rd", "mallory": "mallory-Passw0rd"}
GET = ("GET", "/api/v1/namespaces/default/pods")


@pytest.fixture(scope="module")
def proxy(
    pki: Path, emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Proxy]:
    workdir = tmp_path_factory.mktemp("lockout-abuse")
    for user, password in PASSWORDS.items():
        htpasswd_add(workdir / "htpasswd", user, password, "apr1")
    write_yaml(workdir / "users.yaml", {"users": {}})
    p = start_proxy_for(pki, workdir, emulator.port)  # the default lock-out budgets
    yield p
    p.process.stop()


def send(proxy: Proxy, user: str, password: str, source: str) -> int:
    return proxy.raw(*GET, [basic_header(user, password)], source=source)[0]


def reached(emulator: Emulator, before: int) -> list[tuple[str, str]]:
    """(user, client address) of each request the API server got since `before`: the first of
    its audit sourceIPs (the proxy's X-Forwarded-For)."""
    return [
        (r["authentication"]["user"]["username"], r["source_ips"][0])
        for r in emulator.requests()[before:]
    ]


def test_wrong_passwords_from_elsewhere_do_not_lock_alice_out(
    proxy: Proxy, emulator: Emulator
) -> None:
    assert send(proxy, "alice", PASSWORDS["alice"], "127.0.0.3") == 200  # remembered from now
    before = len(emulator.requests())
    attack = [send(proxy, "alice", f"guess-{i}", "127.0.0.2") for i in range(12)]
    assert attack == [401] * 10 + [429] * 2
    for _ in range(2):
        assert send(proxy, "alice", PASSWORDS["alice"], "127.0.0.3") == 200
        assert send(proxy, "alice", f"guess-{_}", "127.0.0.2") == 429
    # A new address of alice's is fine too.
    assert send(proxy, "alice", PASSWORDS["alice"], "127.0.0.4") == 200
    assert reached(emulator, before) == [
        ("alice", "127.0.0.3"), ("alice", "127.0.0.3"), ("alice", "127.0.0.4")]  # fmt: skip


def test_past_its_budget_a_user_name_is_checked_only_from_clean_addresses(
    proxy: Proxy, emulator: Emulator
) -> None:
    before = len(emulator.requests())
    attackers = [f"127.0.2.{i}" for i in range(1, 15)]
    checked = 0
    for address in attackers:
        for i in range(20):
            status = send(proxy, "bob", f"{address}-{i}", address)
            if status != 401:
                assert status == 429
                break
            checked += 1
    # 10 from each of the first ten addresses uses up bob's 100; then 3 from each other one.
    assert checked == 10 * 10 + 3 * 4
    assert all(send(proxy, "bob", "again", a) == 429 for a in attackers)
    # bob himself, from an address with no failures, is checked and let in; from an address
    # that used up its share he is not (his password is not even checked there).
    assert send(proxy, "bob", PASSWORDS["bob"], "127.0.3.1") == 200
    assert send(proxy, "bob", PASSWORDS["bob"], attackers[-1]) == 429
    assert reached(emulator, before) == [("bob", "127.0.3.1")]


def test_an_attackers_own_logins_do_not_restore_the_address_budget(
    proxy: Proxy, emulator: Emulator
) -> None:
    before = len(emulator.requests())
    statuses = []
    for i in range(80):
        if i % 20 == 0:
            send(proxy, "mallory", PASSWORDS["mallory"], "127.0.4.1")
        statuses.append(send(proxy, f"victim-{i}", "guess", "127.0.4.1"))
    assert statuses == [401] * 50 + [429] * 30
    # mallory's own logins got through while the address had budget left; none after.
    assert {user for user, _ in reached(emulator, before)} == {"mallory"}
    assert send(proxy, "mallory", PASSWORDS["mallory"], "127.0.4.1") == 429
