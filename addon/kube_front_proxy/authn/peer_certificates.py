"""The client certificate chain a TLS handshake proved, read from OpenSSL itself.

mitmproxy's `Client.certificate_list` is OpenSSL's chain re-read with `cryptography`, leaving out
each certificate `cryptography` cannot parse (it logs "failed to parse certificate"). OpenSSL is
BER-lenient (a BOOLEAN of 0x01, an explicitly encoded DEFAULT, a UTCTime with an offset) and
`cryptography` is strict DER, so a client could send [a leaf only OpenSSL reads, the victim's
certificate], prove the key of its own leaf, and have the victim's certificate taken for the
leaf. Here the leaf is OpenSSL's peer certificate (SSL_get_peer_certificate: the certificate
whose key signed the handshake's CertificateVerify), and a chain with any certificate that
cannot be read is unusable as a whole, as Go's TLS stack (kube-apiserver) refuses its handshake.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509
from OpenSSL import SSL, crypto


@dataclass(frozen=True)
class PeerChain:
    """What a client's TLS handshake presented, leaf first; `unreadable` says why it is unusable."""

    certificates: tuple[x509.Certificate, ...] = ()
    unreadable: str = ""


NO_CHAIN = PeerChain()


def proven_chain(conn: SSL.Connection) -> PeerChain:
    """The chain of a finished server-side handshake: OpenSSL's peer certificate first."""
    leaf = conn.get_peer_certificate()
    if leaf is None:
        return NO_CHAIN
    # On the server side OpenSSL's peer chain leaves out the peer's own certificate
    # (SSL_get_peer_cert_chain(3)): it comes first, from SSL_get_peer_certificate.
    presented = [leaf, *(conn.get_peer_cert_chain() or [])]
    ders = [crypto.dump_certificate(crypto.FILETYPE_ASN1, c) for c in presented]
    certificates = []
    for position, der in enumerate(ders):
        try:
            certificates.append(x509.load_der_x509_certificate(der))
        except (ValueError, x509.InvalidVersion) as e:
            what = "the leaf" if position == 0 else f"certificate {position + 1} of the chain"
            return PeerChain(unreadable=f"client certificate chain unreadable: {what}: {e}")
    return PeerChain(tuple(certificates))


class PeerChains:
    """The proven chain of each open client connection, by mitmproxy's client id."""

    def __init__(self) -> None:
        self._chains: dict[str, PeerChain] = {}

    def record(self, client_id: str, chain: PeerChain) -> None:
        if chain != NO_CHAIN:
            self._chains[client_id] = chain

    def get(self, client_id: str) -> PeerChain:
        return self._chains.get(client_id, NO_CHAIN)

    def forget(self, client_id: str) -> None:
        self._chains.pop(client_id, None)
