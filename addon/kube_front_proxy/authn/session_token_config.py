"""The `authn.session_tokens` section of config.yaml: short-lived tokens the proxy signs itself
(authn/session_tokens.py) and hands out at POST /kube-front-proxy/v1/token
(authn/token_endpoint.py).

This module imports nothing from config/settings.py, so that config/settings.py can import it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kube_front_proxy.config.errors import ConfigError
from kube_front_proxy.config.yamlfile import Section

DEFAULT_TTL_SECONDS = 8 * 3600
# A token is a bearer credential that cannot be taken back from its holder, only refused: a
# month bounds the damage of a forgotten revocation.
MAX_TTL_SECONDS = 31 * 24 * 3600


@dataclass(frozen=True)
class SessionTokenSettings:
    file: Path  # the config file, for errors about the files named below
    key: str  # the section's dotted key: "authn.session_tokens"
    signing_key_file: Path
    ttl_seconds: int
    revocation_file: Path | None

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(self.file, f"{self.key}.{key}", message)


def session_token_settings(section: Section) -> SessionTokenSettings:
    """Parse authn.session_tokens; raises ConfigError naming the file and the dotted key."""
    signing_key_file = section.path("signing_key_file")
    ttl = section.integer("ttl_seconds", DEFAULT_TTL_SECONDS)
    if not 1 <= ttl <= MAX_TTL_SECONDS:
        raise section.error("ttl_seconds", f"must be between 1 and {MAX_TTL_SECONDS} (31 days)")
    revocation_file = section.optional_path("revocation_file")
    section.finish()
    return SessionTokenSettings(section.file, section.key, signing_key_file, ttl, revocation_file)
