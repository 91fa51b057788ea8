"""Who a flow belongs to, written onto the flow for mitmweb, saved flow files and filters.

Flow metadata is saved with `-w` and shown in mitmweb, so it carries the identity and never a
secret. Filter one user's traffic with `~meta "k8s_user: alice$"` (mitmweb's search box, or
`mitmdump -nr flows.mitm '~meta "k8s_user: alice$"'`), refused logins with `~meta k8s_refused`.
"""

from __future__ import annotations

from mitmproxy import http

from kube_front_proxy.authn.login import Outcome


def label(flow: http.HTTPFlow, outcome: Outcome) -> None:
    identity = outcome.identity
    if identity is None:
        flow.metadata["k8s_refused"] = outcome.reason
        if outcome.claimed_user is not None:
            flow.metadata["k8s_claimed_user"] = outcome.claimed_user
        flow.comment = f"login refused: {outcome.reason}"
        return
    flow.metadata["k8s_user"] = identity.user
    flow.metadata["k8s_groups"] = list(identity.groups)
    flow.metadata["k8s_authenticator"] = outcome.authenticator
    if outcome.session:
        # The token's id, never the token: revoked by it (authn/revocation.py), named in the audit.
        flow.metadata["k8s_session_token_id"] = outcome.session.token_id
    flow.comment = f"user {identity.user}"
