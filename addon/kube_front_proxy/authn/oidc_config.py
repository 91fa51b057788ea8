"""The `authn.oidc` section of config.yaml: kube-apiserver's --oidc-* flags, as settings.

Key names follow the flags and AuthenticationConfiguration's `jwt` fields. The defaults and the
username prefix rule are those of kube-apiserver's pkg/kubeapiserver/options/authentication.go
(ToAuthenticationConfig), the algorithm allowlist that of the OIDC authenticator
(staging/src/k8s.io/apiserver/plugin/pkg/authenticator/token/oidc/oidc.go, allowedSigningAlgs).

This module imports nothing from config/settings.py, so that config/settings.py can import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.yamlfile import Section

ALLOWED_SIGNING_ALGS = frozenset(
    f"{family}{bits}" for family in ("RS", "PS", "ES") for bits in (256, 384, 512)
)


@dataclass(frozen=True)
class OidcSettings:
    """How ID tokens from one issuer are verified and mapped to a user."""

    file: Path  # the config file, for errors about the files named below
    key: str  # the section's dotted key, e.g. "authn.oidc"
    issuer_url: str
    audiences: tuple[str, ...]
    ca: Path | None
    jwks_file: Path | None
    username_claim: str
    username_prefix: str  # already resolved: "" means none
    groups_claim: str | None
    groups_prefix: str
    required_claims: Mapping[str, str]
    signing_algs: tuple[str, ...]
    refresh_min_interval: float

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.file, f"{self.key}.{key}", message)


def oidc_settings(section: Section) -> OidcSettings:
    """Parse authn.oidc; raises ConfigError naming the file and the dotted key."""
    issuer_url = section.string("issuer_url")
    _check_issuer_url(section, issuer_url)

    audiences = section.string_list("audiences")
    if not audiences:
        raise section.error("audiences", "missing: list at least one client ID")
    for i, audience in enumerate(audiences):
        if not audience:
            raise section.error(f"audiences[{i}]", "must not be empty")
        if audience in audiences[:i]:
            raise section.error(f"audiences[{i}]", f"duplicate value {audience!r}")

    ca = section.optional_path("ca")
    jwks_file = section.optional_path("jwks_file")

    username_claim = section.string("username_claim", "sub")
    if not username_claim:
        raise section.error("username_claim", "must not be empty")
    # --oidc-username-prefix: unset means "<issuer>#" unless the claim is email, "-" means none
    # (issue kubernetes#31380: without it, any issuer could name a built-in user).
    prefix = section.string("username_prefix", "")
    if prefix == "-":
        username_prefix = ""
    elif not prefix and username_claim != "email":
        username_prefix = f"{issuer_url}#"
    else:
        username_prefix = prefix

    groups_claim = section.string("groups_claim", "") or None
    groups_prefix = section.string("groups_prefix", "")
    if groups_prefix and groups_claim is None:
        raise section.error("groups_prefix", "needs groups_claim")

    required_claims = _required_claims(section.section("required_claims"))

    signing_algs = section.string_list("signing_algs", ("RS256",))
    if not signing_algs:
        raise section.error("signing_algs", "must name at least one algorithm")
    for i, alg in enumerate(signing_algs):
        if alg not in ALLOWED_SIGNING_ALGS:
            allowed = ", ".join(sorted(ALLOWED_SIGNING_ALGS))
            raise section.error(f"signing_algs[{i}]", f"{alg!r} is not one of {allowed}")

    interval = section.integer("refresh_min_interval_seconds", 10)
    if interval < 0:
        raise section.error("refresh_min_interval_seconds", "must be 0 (no limit) or more")

    section.finish()
    return OidcSettings(
        file=section.file,
        key=section.key,
        issuer_url=issuer_url,
        audiences=audiences,
        ca=ca,
        jwks_file=jwks_file,
        username_claim=username_claim,
        username_prefix=username_prefix,
        groups_claim=groups_claim,
        groups_prefix=groups_prefix,
        required_claims=required_claims,
        signing_algs=signing_algs,
        refresh_min_interval=float(interval),
    )


def _check_issuer_url(section: Section, url: str) -> None:
    # As kube-apiserver's k8s.io/apiserver/pkg/apis/apiserver/validation/validation.go
    # (validateURL): tokens carry this exact string in "iss", and keys are fetched below it.
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise section.error("issuer_url", f"must be an https:// URL, not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise section.error("issuer_url", "must not have a query, fragment or user name")


def _required_claims(section: Section) -> dict[str, str]:
    claims: dict[str, str] = {}
    for name in section.names():
        if not isinstance(name, str) or not name:
            raise section.error(str(name), "claim names must be non-empty strings")
        claims[name] = section.string(name)
    section.finish()
    return claims
