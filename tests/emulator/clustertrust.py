"""The data of ConfigMap `kube-system/extension-apiserver-authentication`.

Follows `k8s.io/kubernetes pkg/controlplane/controller/clusterauthenticationtrust/
cluster_authentication_trust_controller.go` (`getConfigMapDataFor`,
`combinedClusterAuthenticationInfo`, `combineCertLists`, `filterExpiredCerts`,
`jsonSerializeStringSlice`) for one apiserver starting on an empty ConfigMap:

- `client-ca-file`: the --client-ca-file certificates, when there are any;
- only when --requestheader-client-ca-file has certificates: `requestheader-username-headers`,
  `requestheader-uid-headers`, `requestheader-group-headers`, `requestheader-extra-headers-prefix`
  and `requestheader-allowed-names` as `json.Marshal([]string)` (de-duplicated in order, `[]` when
  empty), and `requestheader-client-ca-file`;
- CA bundles are re-encoded: parsed, certificates that expired more than five minutes ago dropped,
  duplicates dropped, each written back as a PEM `CERTIFICATE` block.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives import serialization

from . import gojson, x509verify

if TYPE_CHECKING:
    from .server import EmulatorConfig

NAMESPACE = "kube-system"
NAME = "extension-apiserver-authentication"


def combine_cert_lists(pem: bytes) -> bytes:
    """`combineCertLists` of one bundle: unexpired (5 min slack), unique, PEM again."""
    cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    seen: set[bytes] = set()
    out: list[bytes] = []
    for cert in x509verify.parse_certs_pem(pem):
        der = cert.public_bytes(serialization.Encoding.DER)
        if cert.not_valid_after_utc <= cutoff or der in seen:
            continue
        seen.add(der)
        out.append(cert.public_bytes(serialization.Encoding.PEM))
    return b"".join(out)


def _unique_json(values: Sequence[str]) -> str:
    """`combineUniqueStringSlices` then `jsonSerializeStringSlice`."""
    return gojson.dumps(list(dict.fromkeys(values)))


def _bundle(path: Path | None) -> str:
    return combine_cert_lists(path.read_bytes()).decode("ascii") if path is not None else ""


def configmap_data(config: EmulatorConfig) -> dict[str, str]:
    """`getConfigMapDataFor` with this emulator's flags."""
    data: dict[str, str] = {}
    client_ca = _bundle(config.client_ca_file)
    if client_ca:
        data["client-ca-file"] = client_ca
    requestheader_ca = _bundle(config.requestheader_client_ca_file)
    if requestheader_ca:
        data["requestheader-username-headers"] = _unique_json(config.requestheader_username_headers)
        data["requestheader-uid-headers"] = _unique_json(config.requestheader_uid_headers)
        data["requestheader-group-headers"] = _unique_json(config.requestheader_group_headers)
        data["requestheader-extra-headers-prefix"] = _unique_json(
            config.requestheader_extra_headers_prefix
        )
        data["requestheader-client-ca-file"] = requestheader_ca
        data["requestheader-allowed-names"] = _unique_json(config.requestheader_allowed_names)
    return data
