"""ConfigMap kube-system/extension-apiserver-authentication, read with the `kubernetes` client."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.emulator import EmulatorServer
from tests.emulator.clustertrust import combine_cert_lists, configmap_data
from tests.support.certificates import CertKey, custom_cert, issue, now
from tests.support.emulator_pki import EmulatorPKI, kubeadm_config

NAME, NAMESPACE = "extension-apiserver-authentication", "kube-system"


@pytest.fixture(scope="module")
def core(
    emulator_server: EmulatorServer,
    emulator_pki: EmulatorPKI,
) -> Iterator[client.CoreV1Api]:
    """The official client as user jane (client certificate from --client-ca-file)."""
    crt, key = emulator_pki.write(issue(emulator_pki.cluster_ca, "jane"), "jane")
    config = client.Configuration()
    config.host = emulator_server.url
    config.ssl_ca_cert = str(emulator_pki.path("ca.crt"))
    config.cert_file, config.key_file = str(crt), str(key)
    with client.ApiClient(config) as api:
        yield client.CoreV1Api(api)


def test_configmap_holds_the_servers_authentication_flags(
    core: client.CoreV1Api,
    emulator_pki: EmulatorPKI,
) -> None:
    cm = core.read_namespaced_config_map(NAME, NAMESPACE)
    assert cm.metadata is not None
    assert (cm.metadata.name, cm.metadata.namespace) == (NAME, NAMESPACE)
    assert cm.data == {
        "client-ca-file": emulator_pki.cluster_ca.cert_pem().decode(),
        "requestheader-client-ca-file": emulator_pki.front_proxy_ca.cert_pem().decode(),
        "requestheader-allowed-names": '["front-proxy-client"]',
        "requestheader-username-headers": '["X-Remote-User"]',
        "requestheader-uid-headers": '["X-Remote-Uid"]',
        "requestheader-group-headers": '["X-Remote-Group"]',
        "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
    }
    listed = core.list_namespaced_config_map(NAMESPACE)
    assert [item.metadata.name for item in listed.items if item.metadata] == [NAME]
    assert core.list_namespaced_config_map("default").items == []


def test_other_configmaps_are_not_found(core: client.CoreV1Api) -> None:
    with pytest.raises(client.ApiException) as error:
        core.read_namespaced_config_map("nope", NAMESPACE)
    assert error.value.status == 404
    assert json.loads(error.value.body or "")["message"] == 'configmaps "nope" not found'


def test_lists_are_json_deduplicated_and_empty_is_brackets(
    emulator_pki: EmulatorPKI,
) -> None:
    data = configmap_data(
        kubeadm_config(
            emulator_pki,
            requestheader_allowed_names=(),
            requestheader_uid_headers=(),
            requestheader_group_headers=("X-Remote-Group", "X-Groups", "X-Remote-Group"),
        )
    )
    assert data["requestheader-allowed-names"] == "[]"
    assert data["requestheader-uid-headers"] == "[]"
    assert data["requestheader-group-headers"] == '["X-Remote-Group","X-Groups"]'


def test_requestheader_keys_need_a_requestheader_ca(emulator_pki: EmulatorPKI) -> None:
    config = kubeadm_config(emulator_pki, requestheader_client_ca_file=None)
    assert configmap_data(config) == {"client-ca-file": emulator_pki.cluster_ca.cert_pem().decode()}
    assert configmap_data(kubeadm_config(emulator_pki, client_ca_file=None)).keys() == {
        "requestheader-client-ca-file",
        "requestheader-allowed-names",
        "requestheader-username-headers",
        "requestheader-uid-headers",
        "requestheader-group-headers",
        "requestheader-extra-headers-prefix",
    }


def test_ca_bundles_drop_expired_and_duplicate_certificates(tmp_path: Path) -> None:
    def expired(name: str, minutes_ago: int) -> CertKey:
        start, end = (
            now() - datetime.timedelta(days=2),
            now() - datetime.timedelta(minutes=minutes_ago),
        )
        return custom_cert(None, name, ca=True, not_before=start, not_after=end)

    valid = custom_cert(None, "valid-ca", ca=True)
    lapsed = expired("lapsed-ca", 6)
    just_expired = expired("slack-ca", 4)  # within filterExpiredCerts' five minutes
    bundle = b"junk\n" + valid.cert_pem() + lapsed.cert_pem() + just_expired.cert_pem()
    assert (
        combine_cert_lists(bundle + valid.cert_pem()) == valid.cert_pem() + just_expired.cert_pem()
    )
