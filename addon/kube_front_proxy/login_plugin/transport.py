"""kube-front-proxy-login's one request: POST /kube-front-proxy/v1/token with Basic credentials,
over HTTPS verified with the cluster's CA (or the system's) and its tls-server-name.

Apart from login_plugin/cli.py so that a command served from the cache does not import it.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

from kube_front_proxy.login_plugin.cli import (
    COMMAND,
    TIMEOUT_SECONDS,
    TOKEN_PATH,
    Cluster,
    LoginError,
)


class _Connection(http.client.HTTPSConnection):
    """HTTPS with the cluster's CA, and its tls-server-name when it has one."""

    def __init__(self, cluster: Cluster) -> None:
        parts = urlsplit(cluster.server)
        assert parts.hostname
        if cluster.ca_pem:
            try:
                context = ssl.create_default_context(cadata=cluster.ca_pem)
            except ssl.SSLError as e:
                raise LoginError(f"the certificate authority is not a PEM CA file: {e}") from None
        else:
            context = ssl.create_default_context()
        super().__init__(parts.hostname, parts.port or 443, timeout=TIMEOUT_SECONDS,
                         context=context)  # fmt: skip
        self._tls = context
        self._server_name = cluster.server_name or parts.hostname

    def connect(self) -> None:
        sock = socket.create_connection((self.host, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self._server_name)


def request_token(cluster: Cluster, user: str, password: str) -> tuple[int, dict[str, Any]]:
    """POST the token request with Basic credentials; the status and the JSON answer."""
    basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    path = urlsplit(cluster.server).path.rstrip("/") + TOKEN_PATH
    connection = _Connection(cluster)
    try:
        connection.request("POST", path, body=b"", headers={
            "Authorization": f"Basic {basic}",
            "Accept": "application/json",
            "User-Agent": f"{COMMAND}/python",
        })  # fmt: skip
        response = connection.getresponse()
        body = response.read(1024 * 1024)
        retry_after = response.getheader("Retry-After")
    except ssl.SSLCertVerificationError as e:
        raise LoginError(f"{cluster.server}: the server's certificate is not trusted: "
                         f"{e.verify_message}") from None  # fmt: skip
    except (OSError, http.client.HTTPException) as e:
        raise LoginError(f"{cluster.server}: {e}") from None
    finally:
        connection.close()
    try:
        answer = json.loads(body)
    except ValueError:
        answer = {}
    if not isinstance(answer, dict):
        answer = {}
    if retry_after:
        answer["retryAfter"] = retry_after
    return response.status, answer
