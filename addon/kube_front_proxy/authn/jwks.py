"""An OIDC issuer's signing keys: discovery, then the JWKS, over verified HTTPS, cached.

Modelled on what kube-apiserver's OIDC authenticator gets from go-oidc v2
(vendor/github.com/coreos/go-oidc): NewProvider (oidc.go) reads
`<issuer>/.well-known/openid-configuration` once and checks that it names the same issuer;
remoteKeySet (jwks.go, verify and keysFromRemote) caches the keys, refetches them when no cached
key verifies a token, shares one fetch among concurrent callers and keeps the old keys when a
fetch fails. Unlike go-oidc, refetches are also rate limited (refresh_min_interval), so that a
flood of tokens naming unknown key ids costs the issuer one request per interval, not one each.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey, import_key

logger = logging.getLogger("kube_front_proxy")

Key = RSAKey | ECKey
Keys = tuple[Key, ...]

_TIMEOUT_SECONDS = 30.0  # kube-apiserver's OIDC http.Client timeout (oidc.go, New)
_MAX_DOCUMENT_BYTES = 1024 * 1024


class KeySource(Protocol):
    def current(self) -> Keys: ...

    async def refresh(self) -> Keys: ...


def parse_jwks(data: Any) -> Keys:
    """The RSA and EC signature keys of a JWKS document; other keys are skipped, as unusable."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError('not a JWKS: no "keys" list')
    keys: list[Key] = []
    for entry in data["keys"]:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        if entry.get("kty") not in ("RSA", "EC"):
            continue
        try:
            key = import_key(entry)
        except (JoseError, ValueError, TypeError) as e:
            logger.warning("OIDC: skipping unreadable JWKS key %r: %s", entry.get("kid"), e)
            continue
        if isinstance(key, RSAKey | ECKey):
            keys.append(key)
    return tuple(keys)


class StaticKeys:
    """Keys from a local JWKS file (jwks_file): never fetched, never refreshed."""

    def __init__(self, path: Path) -> None:
        self._keys = parse_jwks(json.loads(path.read_bytes()))
        if not self._keys:
            raise ValueError("holds no RSA or EC signature key")

    def current(self) -> Keys:
        return self._keys

    async def refresh(self) -> Keys:
        return self._keys


class RemoteKeys:
    """Keys discovered from the issuer and fetched over HTTPS, verified against context."""

    def __init__(self, issuer_url: str, context: ssl.SSLContext, min_interval: float) -> None:
        self._issuer_url = issuer_url
        self._opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=context), _HttpsOnlyRedirects()
        )
        self._min_interval = min_interval
        self._jwks_uri: str | None = None
        self._keys: Keys = ()
        self._last_attempt: float | None = None
        self._inflight: asyncio.Task[Keys] | None = None

    def current(self) -> Keys:
        return self._keys

    async def refresh(self) -> Keys:
        """Fetch the keys again, unless a fetch is under way (join it) or was too recent."""
        if self._inflight is None:
            now = time.monotonic()
            if self._last_attempt is not None and now - self._last_attempt < self._min_interval:
                return self._keys
            self._last_attempt = now
            self._inflight = asyncio.create_task(self._fetch())
        # shield: one caller giving up (client gone) must not cancel the others' fetch.
        return await asyncio.shield(self._inflight)

    async def _fetch(self) -> Keys:
        try:
            keys = await asyncio.to_thread(self._download)
        except (OSError, ValueError, http.client.HTTPException) as e:
            logger.warning(
                "OIDC: cannot fetch keys of %s, keeping the %d known: %s",
                self._issuer_url,
                len(self._keys),
                e,
            )
        else:
            logger.info("OIDC: fetched %d keys of %s", len(keys), self._issuer_url)
            self._keys = keys
        finally:
            self._inflight = None
        return self._keys

    def _download(self) -> Keys:
        """Blocking: runs in a worker thread."""
        if self._jwks_uri is None:
            url = self._issuer_url.rstrip("/") + "/.well-known/openid-configuration"
            discovery = self._get_json(url)
            if discovery.get("issuer") != self._issuer_url:
                raise ValueError(f"discovery names another issuer: {discovery.get('issuer')!r}")
            jwks_uri = discovery.get("jwks_uri")
            if not isinstance(jwks_uri, str) or urlsplit(jwks_uri).scheme != "https":
                raise ValueError(f"discovery has no https jwks_uri: {jwks_uri!r}")
            self._jwks_uri = jwks_uri
        return parse_jwks(self._get_json(self._jwks_uri))

    def _get_json(self, url: str) -> dict[str, Any]:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        with self._opener.open(request, timeout=_TIMEOUT_SECONDS) as response:
            body = response.read(_MAX_DOCUMENT_BYTES + 1)
        if len(body) > _MAX_DOCUMENT_BYTES:
            raise ValueError(f"{url}: larger than {_MAX_DOCUMENT_BYTES} bytes")
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError(f"{url}: not a JSON object")
        return data


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect to plain http would fetch keys with no certificate check: refuse it."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: http.client.HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme != "https":
            raise urllib.error.HTTPError(newurl, code, "redirect to non-https refused", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)
