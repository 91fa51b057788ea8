"""The proxy's own API: `POST /kube-front-proxy/v1/token`, answered by the proxy itself.

Every path under /kube-front-proxy/ is the proxy's and is never forwarded; it is reached only
after a login, like any other request, so the lock-out counts guesses made here too. The token
endpoint issues a session token (authn/session_tokens.py) to the login of the request, whatever
authenticator made it except a session token itself: a token can never be renewed with
itself, so every token ends at most ttl_seconds after a real login (a password, a
certificate, an ID token or a static token). The answer is a
`client.authentication.k8s.io/v1` ExecCredential, what kubectl reads from a credential
plugin (kube-front-proxy-login).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field

from mitmproxy import http

from kube_front_proxy.authn.login import Outcome
from kube_front_proxy.authn.session_tokens import Issued, SessionTokens
from kube_front_proxy.status import status_headers, status_response

PREFIX = "/kube-front-proxy/"
TOKEN_PATH = "/kube-front-proxy/v1/token"
EXEC_CREDENTIAL_VERSION = "client.authentication.k8s.io/v1"
# What the flow shows instead of the token (the client gets the token: seam/withheld_response).
PLACEHOLDER = "<session token: withheld from flows and logs>"

NOT_ENABLED = "session tokens are not enabled on this proxy (authn.session_tokens)"
NO_RENEWAL = (
    "a session token cannot be exchanged for a new one: log in with a password, a client "
    "certificate, an ID token or a static token"
)
USER_REVOKED = "this user's session tokens are revoked for now (authn.session_tokens)"


def is_own_path(path: str) -> bool:
    """Whether a request target (path and query) is the proxy's own, never forwarded."""
    target = path.split("?", 1)[0]
    return target.startswith(PREFIX) or target == PREFIX.rstrip("/")


@dataclass(frozen=True)
class Answer:
    response: http.Response
    issued: Issued | None = None
    # The flow's body holds `placeholder` where the client's holds the token.
    placeholder: bytes = field(default=b"", repr=False)


async def answer(method: str, path: str, outcome: Outcome, tokens: SessionTokens | None) -> Answer:
    """The proxy's answer to a logged-in request for one of its own paths."""
    if path.split("?", 1)[0] != TOKEN_PATH:
        return Answer(status_response(404, f"the proxy serves no {PREFIX}... path but "
                                      f"{TOKEN_PATH}"))  # fmt: skip
    if tokens is None:
        return Answer(status_response(404, NOT_ENABLED))
    if method != "POST":
        response = status_response(405, f"{TOKEN_PATH} takes POST only", "MethodNotAllowed")
        response.headers["Allow"] = "POST"
        return Answer(response)
    identity = outcome.identity
    if identity is None:
        raise ValueError("answer() is for logged-in requests")
    if outcome.session is not None or outcome.basis is None:
        return Answer(status_response(403, NO_RENEWAL))
    issued = tokens.issue(identity, outcome.basis)
    if tokens.revocation_list.revoked(issued.token_id, identity.user, issued.issued_at):
        # An entry with a time to come: the token would be refused at once.
        return Answer(status_response(403, USER_REVOKED))
    placeholder = (PLACEHOLDER + "*" * len(issued.token))[: len(issued.token)]
    return Answer(exec_credential(placeholder, issued.expires_at), issued, placeholder.encode())


def exec_credential(token: str, expires_at: float) -> http.Response:
    expiry = datetime.datetime.fromtimestamp(expires_at, datetime.UTC)
    credential = {
        "apiVersion": EXEC_CREDENTIAL_VERSION,
        "kind": "ExecCredential",
        "spec": {},
        "status": {"expirationTimestamp": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"), "token": token},
    }
    body = json.dumps(credential, separators=(",", ":")).encode() + b"\n"
    headers = {**status_headers(), "Cache-Control": "no-store", "Pragma": "no-cache"}
    return http.Response.make(200, body, headers)
