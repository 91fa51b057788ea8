"""OpenID Connect ID tokens as bearer tokens, checked as kube-apiserver checks them.

Follows kube-apiserver's OIDC authenticator
(staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/oidc/oidc.go: AuthenticateToken,
getUsername, getGroups, getUID) and go-oidc v2's IDTokenVerifier.Verify
(vendor/github.com/coreos/go-oidc/verify.go), in their order:

- `iss` must equal issuer_url exactly; `aud` (a string or a list) must hold one of audiences.
- `exp` must be present and not past, with no leeway; `nbf`, if present, may be up to one minute
  ahead (verify.go: `leeway := 1 * time.Minute`); `iat` is parsed by go-oidc but never
  compared, so it is not checked here either.
- `alg` must be one of signing_algs, checked before any key is touched: `none`, and HS256
  "signed" with the issuer's public key, are refused whatever the keys.
- The signature must verify with a key of the JWKS (the `kid` one, or any if no `kid`).
- username = prefix + the username claim (a string). With username_claim `email`, an
  `email_verified` claim, if present, must be true. Groups: a string or a list of strings.
- Required claims must be present, strings, and equal. No uid and no extras: kube maps none
  unless claimMappings.uid / extra are configured, which the --oidc-* flags cannot do.

Beyond kube: an empty resulting user name, or a name or group that cannot be sent as an HTTP
header value unchanged, is refused, since the API server would read something else.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
import time
from collections.abc import Mapping
from typing import Any, NoReturn

from joserfc import jws
from joserfc.errors import ExceededSizeError, JoseError
from joserfc.jws import JWSRegistry

from kube_front_proxy.authn.jwks import Key, KeySource, RemoteKeys, StaticKeys
from kube_front_proxy.authn.oidc_config import OidcSettings
from kube_front_proxy.authn.users import header_value_problem
from kube_front_proxy.identity.headers import Identity

_NBF_LEEWAY_SECONDS = 60.0  # go-oidc verify.go, IDTokenVerifier.Verify
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
_ALG_NAME = re.compile(r"[A-Za-z0-9]{1,16}")
# Large enough for an x5c chain in the header; joserfc's default (512 bytes) is not.
_MAX_HEADER_BYTES = 8192


class TokenRejected(Exception):
    """A token that does not log anyone in; reason is for the log and never holds the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def looks_like_jwt(token: str) -> bool:
    """Cheap shape test (three base64url parts, the first a JSON object) to pick a login."""
    parts = token.split(".")
    if len(parts) != 3 or not _B64URL.fullmatch(parts[0]) or not _B64URL.fullmatch(parts[1]):
        return False
    try:
        return isinstance(_decode_part(parts[0]), dict)
    except ValueError:
        return False


class OidcAuthenticator:
    """Verifies ID tokens of one issuer; keys are fetched on first use and cached."""

    def __init__(self, settings: OidcSettings) -> None:
        """Raises ConfigError (naming authn.oidc.ca or .jwks_file) if those files are unusable."""
        self.settings = settings
        self._keys: KeySource
        if settings.jwks_file is not None:
            try:
                self._keys = StaticKeys(settings.jwks_file)
            except (OSError, ValueError) as e:
                raise settings.error("jwks_file", f"{settings.jwks_file}: {e}") from None
        else:
            self._keys = RemoteKeys(
                settings.issuer_url, _https_context(settings), settings.refresh_min_interval
            )
        self._registries = {alg: _registry(alg) for alg in settings.signing_algs}

    async def authenticate(self, token: str) -> Identity:
        """The user the token names, or TokenRejected saying why not."""
        header, claims = _decode_unverified(token)
        self._check_issuer_audience_time(claims)
        alg = header.get("alg")
        if alg not in self._registries:
            shown = alg if isinstance(alg, str) and _ALG_NAME.fullmatch(alg) else "?"
            raise TokenRejected(f"signing algorithm {shown} not allowed")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise TokenRejected("malformed token")
        await self._verify_signature(token, alg, kid)
        return self._identity(claims)

    def _check_issuer_audience_time(self, claims: Mapping[str, Any]) -> None:
        if claims.get("iss") != self.settings.issuer_url:
            raise TokenRejected("unknown issuer")
        aud = claims.get("aud")
        audiences = [] if aud is None else [aud] if isinstance(aud, str) else aud
        if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
            raise TokenRejected("malformed token")
        if not set(audiences) & set(self.settings.audiences):
            raise TokenRejected("wrong audience")
        now = time.time()
        exp, nbf = _number_claim(claims, "exp"), _number_claim(claims, "nbf")
        if exp is None:
            raise TokenRejected("token has no expiry")
        if exp < now:
            raise TokenRejected("token expired")
        if nbf is not None and now + _NBF_LEEWAY_SECONDS < nbf:
            raise TokenRejected("token not yet valid")

    async def _verify_signature(self, token: str, alg: str, kid: str | None) -> None:
        registry = self._registries[alg]
        if _signed_by_any(token, kid, self._keys.current(), registry):
            return
        keys = await self._keys.refresh()
        if _signed_by_any(token, kid, keys, registry):
            return
        if not keys:
            raise TokenRejected("issuer keys unavailable")
        if kid is not None and all(key.kid != kid for key in keys):
            raise TokenRejected("unknown key id")
        raise TokenRejected("bad signature")

    def _identity(self, claims: Mapping[str, Any]) -> Identity:
        s = self.settings
        name = claims.get(s.username_claim)
        if not isinstance(name, str):
            raise TokenRejected(f"username claim {s.username_claim} missing or not a string")
        if s.username_claim == "email" and "email_verified" in claims:
            verified = claims["email_verified"]
            if not isinstance(verified, bool):
                raise TokenRejected("email_verified claim is not a boolean")
            if not verified:
                raise TokenRejected("email not verified")
        user = s.username_prefix + name
        if not user:
            raise TokenRejected(f"username claim {s.username_claim} is empty")
        _check_header_value(user, "user name")

        groups: tuple[str, ...] = ()
        if s.groups_claim is not None and claims.get(s.groups_claim) is not None:
            value = claims[s.groups_claim]
            names = [value] if isinstance(value, str) else value
            if not isinstance(names, list) or not all(isinstance(g, str) for g in names):
                raise TokenRejected(f"groups claim {s.groups_claim} is not a list of strings")
            groups = tuple(s.groups_prefix + g for g in names)
            for group in groups:
                _check_header_value(group, "group")

        for claim, wanted in s.required_claims.items():
            if claim not in claims:
                raise TokenRejected(f"required claim {claim} missing")
            if not isinstance(claims[claim], str):
                raise TokenRejected(f"required claim {claim} is not a string")
            if claims[claim] != wanted:
                raise TokenRejected(f"required claim {claim} does not match")
        return Identity(user=user, groups=groups)


def expiry(token: str) -> float | None:
    """The `exp` of a token that OidcAuthenticator.authenticate accepted."""
    return _number_claim(_decode_unverified(token)[1], "exp")


def _https_context(settings: OidcSettings) -> ssl.SSLContext:
    # create_default_context always verifies the certificate and the host name. With a CA file
    # it trusts only that file, as kube-apiserver does with --oidc-ca-file.
    if settings.ca is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(settings.ca))
    except (OSError, ssl.SSLError) as e:
        raise settings.error("ca", f"{settings.ca}: not a readable PEM CA file: {e}") from None


def _registry(alg: str) -> JWSRegistry:
    # One algorithm per registry: joserfc itself then refuses any other, whatever the key.
    registry = JWSRegistry(algorithms=[alg], strict_check_header=False)
    registry.max_header_length = _MAX_HEADER_BYTES
    return registry


def _signed_by_any(token: str, kid: str | None, keys: tuple[Key, ...], reg: JWSRegistry) -> bool:
    for key in keys:
        if kid is not None and key.kid != kid:
            continue
        try:
            jws.deserialize_compact(token, key, registry=reg)
        except ExceededSizeError:
            raise TokenRejected("token too large") from None
        except JoseError:
            continue
        return True
    return False


def _decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims, before any check: compact serialisation only, as kube requires."""
    parts = token.split(".")
    # An empty signature is well-formed (alg none): it is refused by name, below.
    if len(parts) != 3 or not all(_B64URL.fullmatch(p) for p in parts[:2]):
        raise TokenRejected("malformed token")
    if parts[2] and not _B64URL.fullmatch(parts[2]):
        raise TokenRejected("malformed token")
    try:
        header, claims = _decode_part(parts[0]), _decode_part(parts[1])
    except ValueError:
        raise TokenRejected("malformed token") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise TokenRejected("malformed token")
    return header, claims


def _decode_part(part: str) -> Any:
    """Raises ValueError (binascii.Error, UnicodeDecodeError and JSONDecodeError all are)."""
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except binascii.Error as e:
        raise ValueError(str(e)) from None
    # Go's encoding/json has no NaN or Infinity: an "exp": Infinity must not parse.
    return json.loads(raw, parse_constant=_no_constants)


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _number_claim(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TokenRejected("malformed token")
    return float(value)


def _check_header_value(value: str, what: str) -> None:
    problem = header_value_problem(value)
    if problem:
        raise TokenRejected(f"{what} {problem}")
