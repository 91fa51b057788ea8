"""The `authn.session_tokens` section of config.yaml: short-lived tokens the proxy signs itself
(authn/session_tokens.py) and hands out at POST /kube-front-proxy/v1/token
(authn/token_endpoint.py).

This module imports nothing from config/settings.py, so that config/settings.py can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kube_front_proxy.config.declare import FileName, Section, key, resolve
from kube_front_proxy.config.errors import ConfigError

# A token is a bearer credential that cannot be taken back from its holder, only refused: a
# month bounds the damage of a forgotten revocation.
MAX_TTL_SECONDS = 31 * 24 * 3600


class SessionTokens(Section):
    """The proxy's own short-lived tokens (POST /kube-front-proxy/v1/token)."""

    signing_key_file: FileName = key(
        doc="base64 of at least 32 random bytes (`openssl rand -base64 32`), the same on every "
        "replica: signs the tokens of `POST /kube-front-proxy/v1/token`. A new key voids every "
        "token",
        shown="none (no session tokens)",
    )
    ttl_seconds: int = key(
        8 * 3600, "how long a session token lasts (1 s to 31 days); lowering it shortens tokens "
        "already issued", ge=1, le=MAX_TTL_SECONDS,
    )  # fmt: skip
    revocation_file: FileName | None = key(
        None, "YAML list of revoked token ids (`tokens`) and of users whose tokens up to a time "
        "are revoked (`users`)",
    )  # fmt: skip


@dataclass(frozen=True)
class SessionTokenSettings:
    file: Path  # the config file, for errors about the files named below
    key: str  # the section's dotted key: "authn.session_tokens"
    signing_key_file: Path
    ttl_seconds: int
    revocation_file: Path | None

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.file, f"{self.key}.{key}", message)


def session_token_settings(section: SessionTokens, file: Path, key: str) -> SessionTokenSettings:
    signing_key_file = resolve(file, section.signing_key_file)
    revocation_file = resolve(file, section.revocation_file)
    return SessionTokenSettings(file, key, signing_key_file, section.ttl_seconds, revocation_file)
