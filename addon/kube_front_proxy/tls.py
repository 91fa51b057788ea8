"""TLS on both sides of the proxy: serving users, and mutual TLS to the API server.

The addon hands mitmproxy finished pyOpenSSL connections instead of setting mitmproxy's
`certs`/`client_certs` options. So the private keys never have to be copied into a combined
PEM file, and the front-proxy client certificate is presented only by this code: if the addon
is not loaded, mitmproxy connects without it and the API server ignores identity headers.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from mitmproxy.addons.tlsconfig import DEFAULT_HOSTFLAGS
from OpenSSL import SSL, crypto

from kube_front_proxy.config.settings import FileRef, Upstream

PrivateKey = (
    rsa.RSAPrivateKey
    | ec.EllipticCurvePrivateKey
    | ed25519.Ed25519PrivateKey
    | (ed448.Ed448PrivateKey)
)


_AlpnChoice = bytes | SSL._NoOverlappingProtocols


@dataclass(frozen=True)
class KeyPair:
    """A certificate chain (leaf first) and the leaf's private key."""

    chain: tuple[x509.Certificate, ...]
    key: PrivateKey


def read_certificates(ref: FileRef) -> tuple[x509.Certificate, ...]:
    data = _read(ref)
    try:
        certs = tuple(x509.load_pem_x509_certificates(data))
    except ValueError:
        raise ref.error("not a PEM certificate file") from None
    return certs


def read_key_pair(cert_ref: FileRef, key_ref: FileRef) -> KeyPair:
    """Load and cross-check a certificate and its key; errors name the config key."""
    chain = read_certificates(cert_ref)
    now = datetime.datetime.now(datetime.UTC)
    leaf = chain[0]
    if leaf.not_valid_after_utc < now:
        raise cert_ref.error(f"certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d}")
    try:
        key = serialization.load_pem_private_key(_read(key_ref), password=None)
    except TypeError:
        raise key_ref.error("encrypted private keys are not supported") from None
    except (ValueError, UnsupportedAlgorithm):
        raise key_ref.error("not a PEM private key") from None
    if not isinstance(key, PrivateKey):
        raise key_ref.error(f"unsupported key type {type(key).__name__}")
    if key.public_key() != leaf.public_key():
        raise key_ref.error(f"does not match the certificate {cert_ref.path}")
    return KeyPair(chain, key)


def _read(ref: FileRef) -> bytes:
    try:
        return ref.path.read_bytes()
    except OSError as e:
        raise ref.error(f"cannot read: {e.strerror or e}") from None


def _use_key_pair(context: SSL.Context, pair: KeyPair) -> None:
    context.use_certificate(pair.chain[0])
    for extra in pair.chain[1:]:
        context.add_extra_chain_cert(crypto.X509.from_cryptography(extra))
    context.use_privatekey(pair.key)
    context.check_privatekey()


class ServingTLS:
    """The certificate the proxy shows to users (nginx: ssl_certificate), and the request for a
    client certificate when users may log in with one (nginx: ssl_verify_client optional_no_ca).
    """

    def __init__(self, pair: KeyPair, client_cas: Sequence[x509.Certificate] = ()) -> None:
        self.pair = pair
        self.client_cas = tuple(client_cas)
        self._contexts = {http2: self._context(http2) for http2 in (True, False)}

    def _context(self, http2: bool) -> SSL.Context:
        context = SSL.Context(SSL.TLS_SERVER_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        _use_key_pair(context, self.pair)
        if self.client_cas:
            # Ask for a certificate but accept any: authn/client_certs.py verifies it per request,
            # so a bad one gets a 401 (as from kube-apiserver) and no certificate is fine. The CA
            # names tell clients such as kubectl which of their certificates to send.
            context.set_verify(SSL.VERIFY_PEER, lambda *_: True)
            # Without a session id context OpenSSL fails the resumption of such sessions.
            context.set_session_id(b"kube-front-proxy")
            context.set_client_ca_list([crypto.X509.from_cryptography(c).get_subject()
                                        for c in self.client_cas])  # fmt: skip
        preferred = [b"h2", b"http/1.1"] if http2 else [b"http/1.1"]

        def select(_conn: SSL.Connection, offered: list[bytes]) -> _AlpnChoice:
            return next((p for p in preferred if p in offered), SSL.NO_OVERLAPPING_PROTOCOLS)

        context.set_alpn_select_callback(select)
        return context

    def connection(self, http2: bool) -> SSL.Connection:
        conn = SSL.Connection(self._contexts[http2])
        conn.set_accept_state()
        return conn


class UpstreamTLS:
    """Mutual TLS to the API server, always verified (proxy_ssl_verify on, proxy_ssl_name)."""

    def __init__(
        self, upstream: Upstream, trusted: Sequence[x509.Certificate], pair: KeyPair | None
    ) -> None:
        self.server_name = upstream.server_name
        self.pair = pair
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_verify(SSL.VERIFY_PEER)
        store = context.get_cert_store()
        assert store is not None
        for cert in trusted:
            store.add_cert(crypto.X509.from_cryptography(cert))
        if pair:  # none in impersonation mode: the proxy's token says who it is
            _use_key_pair(context, pair)
        self._context = context

    def connection(self, alpn_offers: Sequence[bytes]) -> SSL.Connection:
        conn = SSL.Connection(self._context)
        _verify_name(conn, self.server_name)
        if alpn_offers:
            conn.set_alpn_protos(list(alpn_offers))
        conn.set_connect_state()
        return conn


def _verify_name(conn: SSL.Connection, name: str) -> None:
    """Make OpenSSL check the server certificate for name, as mitmproxy's tlsconfig does.

    pyOpenSSL has no public API for hostname verification; these are the same OpenSSL calls
    mitmproxy itself makes for its upstream connections.
    """
    param = SSL._lib.SSL_get0_param(conn._ssl)  # type: ignore[attr-defined]
    SSL._lib.X509_VERIFY_PARAM_set_hostflags(param, DEFAULT_HOSTFLAGS)  # type: ignore[attr-defined]
    try:
        ip = ipaddress.ip_address(name).packed
    except ValueError:
        host = name.encode("idna")
        conn.set_tlsext_host_name(host)
        ok = SSL._lib.X509_VERIFY_PARAM_set1_host(param, host, len(host))  # type: ignore[attr-defined]
    else:
        ok = SSL._lib.X509_VERIFY_PARAM_set1_ip(param, ip, len(ip))  # type: ignore[attr-defined]
    if ok != 1:
        raise ValueError(f"OpenSSL refused the server name {name!r}")
