"""The client's address as the API server's audit records it.

kube-apiserver's audit `sourceIPs` (and `GetClientIP`, their first entry) come from the first
X-Forwarded-For header, then X-Real-Ip, then the connection's address
(k8s.io/apimachinery/pkg/util/net/http.go `SourceIPs`). Behind this proxy the connection is the
proxy's own, so whatever a client wrote in those headers would be the address the audit blames.

Every client-sent address header (X-Forwarded-For, X-Real-Ip, Forwarded, in any case) is
replaced by one X-Forwarded-For holding the address of the TCP peer. Replaced, not appended
(nginx's `$proxy_add_x_forwarded_for`): appending would keep the forged address first, where
`GetClientIP` and most readers of an audit log look. The proxy terminates TLS, so anything in
front of it relays TCP and adds no header the proxy could trust: the TCP peer is the client.
"""

from __future__ import annotations

import functools
import ipaddress

from mitmproxy.http import Headers

# What a client could use to claim another address, lower-cased.
_ADDRESS_CLAIMS = frozenset({b"x-forwarded-for", b"x-real-ip", b"forwarded"})


@functools.lru_cache(maxsize=1024)
def go_ip_string(address: str) -> str:
    """The address as Go's net.IP String() writes it: an IPv4-mapped IPv6 one as IPv4.

    Remembered for the last addresses: parsing one took as long as the rest of the header
    rewrite, on every request of every connection."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return str(ip.ipv4_mapped)
    return str(ip)


def forwarded_for(headers: Headers, client: str, lowercase: bool = False) -> None:
    """Replace every address header in headers with `X-Forwarded-For: client`.

    lowercase: the request goes upstream over HTTP/2, where names are lower-case.
    """
    name = b"x-forwarded-for" if lowercase else b"X-Forwarded-For"
    kept = tuple(f for f in headers.fields if f[0].strip().lower() not in _ADDRESS_CLAIMS)
    headers.fields = (*kept, (name, go_ip_string(client).encode()))
