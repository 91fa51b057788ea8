"""Does the API server trust the proxy the way the proxy assumes? Plain comparisons.

Input: the data of ConfigMap kube-system/extension-apiserver-authentication, which every
kube-apiserver publishes from its --requestheader-* flags (k8s.io/kubernetes
pkg/controlplane/controller/clusterauthenticationtrust/cluster_authentication_trust_controller.go,
`getConfigMapDataFor`: the lists as `json.Marshal([]string)`, the CA as a PEM bundle, and the
requestheader keys only when --requestheader-client-ca-file is set). Aggregated API servers read
the same keys (k8s.io/apiserver pkg/server/options/authentication_dynamic_request_header.go),
a missing list being an empty one. In an HA cluster the lists are the union over all servers.

What must match, header by header. The API server reads *every* name it lists
(k8s.io/apiserver pkg/authentication/request/headerrequest/requestheader.go: usernames and uids
in order, first non-empty value wins; every value of every group header; every header starting
with any extra prefix, case-insensitively). The proxy writes only the *first* name of each of
its lists (identity/headers.py). So, per kind:

1. the name the proxy writes must be one the API server reads, else users lose that part of
   their identity: no username is a 401 for every request, groups, extras or a uid are
   silently dropped. For extras the prefix must equal one of the server's: the server takes the
   key from what follows *its* prefix, so a shorter server prefix would turn
   `X-Remote-Extra-scopes` into key `extra-scopes`. A proxy that writes none of a kind (an
   empty list) asks for none. These are *problems*: the proxy does not serve with them.
2. every name the API server reads must be stripped from client requests, else a client sets
   it and the API server takes it as identity over the proxy's certificate. The proxy strips
   what the API server reads whatever its config lists (`server_names`, given to the writer's
   `strip_also`), so a name the config does not list is only a *note*.

Header names compare case-insensitively (Go's canonical header keys). Names the proxy lists
and the server does not read are harmless: stripped, never read.

The certificate (k8s.io/apiserver pkg/authentication/request/x509/x509.go, `Verifier`): the
proxy's client certificate must chain to a CA of requestheader-client-ca-file (intermediates
from the chain the proxy presents, EKU clientAuth or none on each certificate: Go's
crypto/x509 `Verify` with `ExtKeyUsageClientAuth`), and its subject CN must equal (case
sensitive) one of requestheader-allowed-names, an empty list allowing any.

In identity.mode impersonate none of this applies: the proxy presents no certificate, so the
API server never reads these headers from it, and it sends Impersonate-* headers instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import crypto

from kube_front_proxy.identity.headers import HeaderNames

CONFIGMAP_PATH = "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication"
CA_KEY = "requestheader-client-ca-file"
ALLOWED_NAMES_KEY = "requestheader-allowed-names"
FRONT_PROXY_OFF = (
    "the API server has no --requestheader-client-ca-file: front-proxy authentication is off, "
    "so it ignores the identity headers the proxy sends"
)


class TrustDataError(ValueError):
    """The ConfigMap's data is not what kube-apiserver publishes."""


@dataclass(frozen=True)
class _Kind:
    config_key: str  # identity.<key>
    flag: str  # --<flag>, also the ConfigMap key
    names: Callable[[HeaderNames], tuple[str, ...]]
    loss: str  # what users lose when the API server does not read the name the proxy writes
    prefixes: bool = False


_KINDS = (
    _Kind("username_headers", "requestheader-username-headers", lambda n: n.username,
          "every request would be refused (401)"),
    _Kind("group_headers", "requestheader-group-headers", lambda n: n.group,
          "users would lose their groups"),
    _Kind("extra_headers_prefixes", "requestheader-extra-headers-prefix",
          lambda n: n.extra_prefixes, "users' extras would be lost or read under other keys",
          prefixes=True),
    _Kind("uid_headers", "requestheader-uid-headers", lambda n: n.uid,
          "users would lose their uid"),
)  # fmt: skip


@dataclass(frozen=True)
class Findings:
    """How the proxy's front-proxy settings compare with the API server's, as sentences."""

    problems: list[str] = field(default_factory=list)  # users would not get their identity
    notes: list[str] = field(default_factory=list)  # differences that change nothing
    server_names: HeaderNames = field(default_factory=HeaderNames)  # what the server reads


def server_names(data: Mapping[str, str]) -> HeaderNames:
    """The header names and prefixes the API server reads as identity."""
    lists = {kind.config_key: tuple(_string_list(data, kind.flag)) for kind in _KINDS}
    return HeaderNames(
        username=lists["username_headers"],
        group=lists["group_headers"],
        extra_prefixes=lists["extra_headers_prefixes"],
        uid=lists["uid_headers"],
    )


def mismatches(
    data: Mapping[str, str], names: HeaderNames, chain: Sequence[x509.Certificate]
) -> Findings:
    """Every way the proxy's front-proxy settings disagree with the API server's.

    `names`: the proxy's identity.* header names; `chain`: the client certificate chain it
    presents (leaf first). Raises TrustDataError when a value is not what kube-apiserver writes.
    """
    if not data.get(CA_KEY, "").strip():
        return Findings(problems=[FRONT_PROXY_OFF])
    found = Findings(server_names=server_names(data))
    for kind in _KINDS:
        problem, note = _header_mismatch(kind, data, names)
        found.problems.extend(problem)
        found.notes.extend(note)
    found.problems.extend(certificate_mismatches(data, chain))
    return found


def _header_mismatch(
    kind: _Kind, data: Mapping[str, str], names: HeaderNames
) -> tuple[list[str], list[str]]:
    ours = kind.names(names)
    theirs = _string_list(data, kind.flag)
    read = {n.lower() for n in theirs}
    differ = f"identity.{kind.config_key} is {_show(ours)} but the API server reads " \
             f"--{kind.flag} {_show(theirs)}"  # fmt: skip
    problems = []
    if ours and ours[0].lower() not in read:
        problems.append(
            f"{differ}: the proxy writes {ours[0]}, which the API server does not read, so "
            f"{kind.loss}"
        )
    unlisted = [n for n in theirs if not _listed(n, names, kind.prefixes)]
    notes = []
    if unlisted:
        notes.append(
            f"{differ}: the API server also reads {', '.join(unlisted)}, which "
            f"identity.{kind.config_key} does not list: stripped from client requests anyway"
        )
    return problems, notes


def _listed(name: str, names: HeaderNames, prefix: bool) -> bool:
    """Whether the config strips `name` (a prefix: everything it starts), under any kind."""
    lowered = name.lower()
    if lowered.startswith(tuple(p.lower() for p in names.extra_prefixes)):
        return True
    return not prefix and lowered in {n.lower() for n in names.username + names.group + names.uid}


def certificate_mismatches(data: Mapping[str, str], chain: Sequence[x509.Certificate]) -> list[str]:
    """The client certificate against requestheader-client-ca-file and -allowed-names."""
    leaf = chain[0]
    cn = _common_name(leaf)
    found = []
    try:
        cas = x509.load_pem_x509_certificates(data[CA_KEY].encode())
    except ValueError:
        raise TrustDataError(f"{CA_KEY} is not a PEM certificate bundle") from None
    problem = _chain_problem(chain, cas)
    if problem:
        found.append(
            f"upstream.client_cert (CN {cn}) does not chain to a CA in the API server's "
            f"--{CA_KEY} ({_show([_common_name(c) for c in cas])}): {problem}"
        )
    allowed = _string_list(data, ALLOWED_NAMES_KEY)
    if allowed and cn not in allowed:
        found.append(
            f"upstream.client_cert has CN {cn} but the API server's --{ALLOWED_NAMES_KEY} "
            f"is {_show(allowed)}"
        )
    return found


def _chain_problem(chain: Sequence[x509.Certificate], cas: Sequence[x509.Certificate]) -> str:
    """Why the chain does not verify for client auth against cas ("" if it does)."""
    store = crypto.X509Store()
    for ca in cas:
        store.add_cert(crypto.X509.from_cryptography(ca))
    intermediates = [crypto.X509.from_cryptography(c) for c in chain[1:]]
    leaf = crypto.X509.from_cryptography(chain[0])
    try:
        verified = crypto.X509StoreContext(store, leaf, intermediates).get_verified_chain()
    except crypto.X509StoreContextError as e:
        return str(e)
    for cert in verified:
        if not _allows_client_auth(cert.to_cryptography()):
            return f"{_common_name(cert.to_cryptography())} is not for client authentication"
    return ""


def _allows_client_auth(cert: x509.Certificate) -> bool:
    """Go's checkChainForKeyUsage, one certificate: no EKU extension allows any usage."""
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return bool({ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE}
                & set(usages))  # fmt: skip


def _common_name(cert: x509.Certificate) -> str:
    # Go's Subject.CommonName: the last CN attribute, "" without one.
    values = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = values[-1].value if values else ""
    return value if isinstance(value, str) else value.decode(errors="replace")


def _string_list(data: Mapping[str, str], key: str) -> list[str]:
    """`deserializeStrings`: a JSON list of strings; a missing or empty value is none."""
    text = data.get(key, "")
    if not text:
        return []
    try:
        value = json.loads(text)
    except ValueError:
        raise TrustDataError(f"{key} is not JSON: {text[:100]!r}") from None
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TrustDataError(f"{key} is not a JSON list of strings: {text[:100]!r}")
    return value


def _show(values: Sequence[str]) -> str:
    return f"[{', '.join(values)}]"
