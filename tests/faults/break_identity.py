"""Fault injection for the end-to-end tests: loaded as a second mitmproxy script.

It breaks the identity-header writer so that the proxy must fail closed: the request has to
end in an error response and never reach the API server.
"""

from kube_front_proxy.identity.headers import IdentityHeaderWriter


def _broken(*_args: object) -> None:
    raise RuntimeError("injected fault in the identity-header writer")


IdentityHeaderWriter.apply = _broken  # type: ignore[method-assign]
