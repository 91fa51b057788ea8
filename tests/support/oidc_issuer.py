"""A real OpenID Connect issuer on loopback HTTPS, for tests and the README's example.

It serves discovery (`/.well-known/openid-configuration`) and a JWKS, signs ID tokens with RSA
(RS256) and EC P-256 (ES256) keys, rotates keys, counts JWKS fetches, and mints the bad tokens
an authenticator must refuse. Its certificate comes from a CA of its own (certs/devpki.py).

    python -m tests.support.oidc_issuer --port 9443 --out run/oidc   # serve, print a token
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey

import devpki

from .processes import REPO

AUDIENCE = "kube-front-proxy"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64json(value: Mapping[str, Any]) -> str:
    return _b64(json.dumps(value).encode())


class OidcIssuer:
    """Start with start(), stop with stop() (or use serving()); tokens need it not running."""

    def __init__(self, directory: Path, path: str = "") -> None:
        ca = devpki.make_ca("oidc-issuer-ca")
        server = devpki.issue(
            ca, "oidc-issuer", dns_names=("localhost",), ip_addresses=("127.0.0.1",),
            usages=("server",),
        )  # fmt: skip
        self.ca_file, _ = ca.write(directory, "oidc-ca")
        self._cert, self._key = server.write(directory, "oidc-issuer")
        self.path = path
        self.issuer_url = ""  # known once started: the port is chosen then
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        self.delay_seconds = 0.0  # slows JWKS answers, to hold concurrent fetches in flight
        self.keys_redirect: str | None = None  # if set, the JWKS URL answers 302 to it
        self._lock = threading.Lock()
        self._keys: dict[str, RSAKey | ECKey] = {}
        self.published: list[str] = []
        self._next_rsa = 1
        self.rotate(keep_old=True)
        self._add(ECKey.generate_key("P-256", parameters={"kid": "ec-1"}))
        self._server: ThreadingHTTPServer | None = None

    # --- keys -----------------------------------------------------------------------------

    def _add(self, key: RSAKey | ECKey) -> str:
        kid = str(key.kid)
        self._keys[kid] = key
        with self._lock:
            self.published.append(kid)
        return kid

    def rotate(self, keep_old: bool) -> str:
        """A new RSA signing key; the previous RSA keys stay published only if keep_old."""
        kid = f"rsa-{self._next_rsa}"
        self._next_rsa += 1
        if not keep_old:
            with self._lock:
                self.published = [k for k in self.published if not k.startswith("rsa-")]
        return self._add(RSAKey.generate_key(2048, parameters={"kid": kid}))

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            kids = list(self.published)
        return {"keys": [self._keys[k].as_dict(private=False) | {"use": "sig"} for k in kids]}

    def public_pem(self, kid: str = "rsa-1") -> bytes:
        public = self._keys[kid].get_op_key("verify")
        return public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    # --- tokens ---------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        """Valid ID-token claims for alice; an override of None removes that claim."""
        now = int(time.time())
        claims = {"iss": self.issuer_url, "aud": AUDIENCE, "sub": "alice", "iat": now}
        claims |= {"exp": now + 600, "email": "alice@example.com", "email_verified": True}
        claims |= overrides
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self, claims: Mapping[str, Any] | None = None, signer: str = "rsa-1", **header: Any
    ) -> str:
        """Signed by key signer (RS256 or ES256); header entries override, e.g. kid="other"."""
        key = self._keys[signer]
        alg = "RS256" if isinstance(key, RSAKey) else "ES256"
        fields = {"alg": alg, "kid": signer, "typ": "JWT"} | header
        return jwt.encode(fields, dict(claims or self.claims()), key, algorithms=[fields["alg"]])

    def unsigned_token(self, claims: Mapping[str, Any] | None = None) -> str:
        """alg none, empty signature (RFC 7519 section 6)."""
        header = {"alg": "none", "typ": "JWT"}
        return f"{_b64json(header)}.{_b64json(claims or self.claims())}."

    def hs256_with_public_key(self, claims: Mapping[str, Any] | None = None) -> str:
        """The classic key-confusion forgery: HMAC keyed with the issuer's public RSA key PEM."""
        header = {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}
        signing_input = f"{_b64json(header)}.{_b64json(claims or self.claims())}"
        mac = hmac.new(self.public_pem("rsa-1"), signing_input.encode(), hashlib.sha256)
        return f"{signing_input}.{_b64(mac.digest())}"

    # --- serving --------------------------------------------------------------------------

    def start(self, port: int = 0) -> OidcIssuer:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == issuer.path + "/.well-known/openid-configuration":
                    with issuer._lock:
                        issuer.discovery_fetches += 1
                    body = {"issuer": issuer.issuer_url, "jwks_uri": issuer.issuer_url + "/keys"}
                elif self.path == issuer.path + "/keys" and issuer.keys_redirect:
                    self.send_response(302)
                    self.send_header("Location", issuer.keys_redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                elif self.path == issuer.path + "/keys":
                    with issuer._lock:
                        issuer.jwks_fetches += 1
                    time.sleep(issuer.delay_seconds)  # the scenario: a slow issuer
                    body = issuer.jwks()
                else:
                    self.send_error(404)
                    return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self._cert, self._key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.issuer_url = f"https://127.0.0.1:{server.server_address[1]}{self.path}"
        # A short poll interval: stop() waits up to one interval for the serving thread.
        serve = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
        serve.start()
        self._server = server
        return self

    def stop(self) -> None:
        """The issuer goes down: connections are refused from now on."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


@contextmanager
def serving(directory: Path, path: str = "") -> Iterator[OidcIssuer]:
    issuer = OidcIssuer(directory, path).start()
    try:
        yield issuer
    finally:
        issuer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local OIDC issuer for trying the proxy.")
    parser.add_argument("--port", type=int, default=9443)
    parser.add_argument("--out", type=Path, default=REPO / "run" / "oidc")
    args = parser.parse_args(argv)
    issuer = OidcIssuer(args.out).start(args.port)
    claims = issuer.claims(exp=int(time.time()) + 3600, groups=["developers"])
    print(f"issuer_url: {issuer.issuer_url}\naudience:   {AUDIENCE}\nca:         {issuer.ca_file}")
    print(f"token (1 h, sub alice, groups [developers]):\n{issuer.token(claims)}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        issuer.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
