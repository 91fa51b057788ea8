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
from typing import Annotated, Literal, get_args
from urllib.parse import urlsplit

from pydantic import AfterValidator, StringConstraints, model_validator

from kube_front_proxy.config.declare import NONE, FileName, KeyProblem, Section, key, resolve
from kube_front_proxy.config.errors import ConfigError

SigningAlg = Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
                     "ES256", "ES384", "ES512"]  # fmt: skip
ALLOWED_SIGNING_ALGS = frozenset(get_args(SigningAlg))


def _issuer_url(url: str) -> str:
    # As kube-apiserver's k8s.io/apiserver/pkg/apis/apiserver/validation/validation.go
    # (validateURL): tokens carry this exact string in "iss", and keys are fetched below it.
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"must be an https:// URL, not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ValueError("must not have a query, fragment or user name")
    return url


def _distinct(values: list[str]) -> list[str]:
    for i, value in enumerate(values):
        if value in values[:i]:
            raise KeyProblem(f"[{i}]", f"duplicate value {value!r}")
    return values


NonEmpty = Annotated[str, StringConstraints(min_length=1)]


class Oidc(Section):
    """ID tokens of one OpenID Connect issuer (kube-apiserver's --oidc-* flags)."""

    issuer_url: Annotated[str, AfterValidator(_issuer_url)] = key(
        doc="the issuer, `https://` (`--oidc-issuer-url`)", shown="required with `oidc`"
    )
    audiences: Annotated[list[NonEmpty], AfterValidator(_distinct)] = key(
        doc="accepted `aud` values (`--oidc-client-id`)", shown="required with `oidc`",
        min_length=1,
    )  # fmt: skip
    ca: FileName | None = key(
        None, "CA bundle for the issuer's HTTPS (`--oidc-ca-file`)", shown="system trust"
    )
    jwks_file: FileName | None = key(None, "a local JWKS instead of discovery and fetching")
    username_claim: str = key("sub", "`--oidc-username-claim`", min_length=1)
    username_prefix: str | None = key(
        None, "`--oidc-username-prefix`; `-` for none",
        shown="`<issuer_url>#` unless the claim is `email`",
    )  # fmt: skip
    groups_claim: str | None = key(None, "`--oidc-groups-claim`")
    groups_prefix: str = key("", "`--oidc-groups-prefix`; needs `groups_claim`")
    required_claims: dict[NonEmpty, str] = key(
        {}, "claim -> value that must match (`--oidc-required-claim`)", shown=NONE
    )
    signing_algs: list[SigningAlg] = key(
        ["RS256"], "accepted algorithms, of RS/PS/ES 256/384/512 (`--oidc-signing-algs`)",
        min_length=1,
    )  # fmt: skip
    refresh_min_interval_seconds: int = key(
        10, "the issuer's keys are fetched again for an unknown key at most this often", ge=0
    )

    @model_validator(mode="after")
    def _groups(self) -> Oidc:
        if self.groups_prefix and not self.groups_claim:
            raise KeyProblem("groups_prefix", "needs groups_claim")
        return self


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


def oidc_settings(section: Oidc, file: Path, key: str) -> OidcSettings:
    """authn.oidc as the authenticator uses it: files resolved, the username prefix decided."""
    # --oidc-username-prefix: unset means "<issuer>#" unless the claim is email, "-" means none
    # (issue kubernetes#31380: without it, any issuer could name a built-in user).
    prefix = section.username_prefix or ""
    if prefix == "-":
        username_prefix = ""
    elif not prefix and section.username_claim != "email":
        username_prefix = f"{section.issuer_url}#"
    else:
        username_prefix = prefix
    return OidcSettings(
        file=file,
        key=key,
        issuer_url=section.issuer_url,
        audiences=tuple(section.audiences),
        ca=resolve(file, section.ca),
        jwks_file=resolve(file, section.jwks_file),
        username_claim=section.username_claim,
        username_prefix=username_prefix,
        groups_claim=section.groups_claim or None,
        groups_prefix=section.groups_prefix,
        required_claims=dict(section.required_claims),
        signing_algs=tuple(section.signing_algs),
        refresh_min_interval=float(section.refresh_min_interval_seconds),
    )
