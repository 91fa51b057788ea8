"""Everything the request path needs, built once from config.yaml and never changed after."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .authentication import BasicLogin
from .config import Settings, load_settings
from .credential_cache import CredentialCache
from .htpasswd import Htpasswd
from .identity import IdentityHeaderWriter
from .lockout import Lockout
from .tls import ServingTLS, UpstreamTLS, read_certificates, read_key_pair
from .users import load_users


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    login: BasicLogin
    writer: IdentityHeaderWriter
    serving: ServingTLS
    upstream: UpstreamTLS

    @property
    def mode(self) -> str:
        """The one mitmproxy listener this proxy runs: reverse mode towards the API server."""
        s = self.settings
        return f"reverse:{s.upstream.url}@{s.listen_host}:{s.listen_port}"

    @property
    def mitmproxy_options(self) -> dict[str, object]:
        """The mitmproxy options this configuration decides; the addon owns them."""
        return {
            "mode": [self.mode],
            # Connect upstream when a request arrives, so that a failure becomes a 502 for
            # that request instead of a silently closed client connection.
            "connection_strategy": "lazy",
            "keep_host_header": False,
            # mitmproxy kills clients from public addresses so that a forward proxy is not
            # left open to the internet; every request here must log in first.
            "block_global": not self.settings.allow_public_clients,
        }


def build_runtime(config_file: Path) -> Runtime:
    """Load config.yaml and every file it names; raises ConfigError on the first problem."""
    settings = load_settings(config_file)
    writer = IdentityHeaderWriter(settings.header_names)
    users = load_users(settings.users, settings.header_names)
    cache = CredentialCache(settings.cache_ttl, settings.cache_max_entries)
    login = BasicLogin(Htpasswd(settings.htpasswd), users, writer, cache, Lockout(settings.lockout))
    serving = ServingTLS(read_key_pair(settings.serving_cert, settings.serving_key))
    up = settings.upstream
    upstream = UpstreamTLS(
        up, read_certificates(up.ca), read_key_pair(up.client_cert, up.client_key)
    )
    return Runtime(settings, login, writer, serving, upstream)
