"""kube-apiserver's request authentication chain and authentication filter.

Chain, as assembled by `k8s.io/kubernetes pkg/kubeapiserver/authenticator/config.go` `Config.New`:

    FailOnError(
        AuthenticatedGroupAdder(Union(requestheader, x509 client cert, bearer token)),
        anonymous,                                   # only with --anonymous-auth=true
    )

- requestheader: `k8s.io/apiserver pkg/authentication/request/x509/x509.go` `Verifier` around
  `pkg/authentication/request/headerrequest/requestheader.go`; only built when
  --requestheader-client-ca-file is set.
- x509 client cert: `x509.go` `Authenticator` with `CommonNameUserConversion`; only built when
  --client-ca-file is set.
- bearer token: `pkg/authentication/request/bearertoken/bearertoken.go` over the static token file
  (`pkg/authentication/token/tokenfile/tokenfile.go`). A real kube-apiserver always has token
  authenticators (service-account tokens), so any unknown bearer token is an error here too.
- `Union` (`pkg/authentication/request/union/union.go`) tries each in order, first success wins,
  errors are collected and returned as an aggregate only when nobody succeeded.
- `AuthenticatedGroupAdder` (`pkg/authentication/group/authenticated_group_adder.go`).
- `FailOnError` + anonymous (`pkg/authentication/request/anonymous/anonymous.go`): an error from the
  chain is final (401), only "no opinion" falls through to anonymous.

After a success the filter (`pkg/endpoints/filters/authentication.go` `withAuthentication`) deletes
`Authorization` and the standard plus the configured front-proxy headers.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from . import x509verify
from .requestheader import (
    STANDARD_EXTRA_HEADER_PREFIXES,
    STANDARD_GROUP_HEADERS,
    STANDARD_UID_HEADERS,
    STANDARD_USERNAME_HEADERS,
    Header,
    Headers,
    RequestHeaderAuthenticator,
    UserInfo,
    clear_authentication_headers,
    header_value,
)

ANONYMOUS_USER = "system:anonymous"
ALL_AUTHENTICATED = "system:authenticated"
ALL_UNAUTHENTICATED = "system:unauthenticated"
CREDENTIAL_ID_KEY = "authentication.kubernetes.io/credential-id"

# Names used in results and the request log.
REQUESTHEADER = "requestheader"
X509 = "x509"
TOKEN = "token"
ANONYMOUS = "anonymous"


@dataclass
class AuthRequest:
    """What the authenticators look at: headers as received and the TLS peer chain (leaf first).

    `headers` is replaced (not mutated in place) by authenticators that clean up after
    themselves, like Go's authenticators deleting from `req.Header`.
    """

    headers: list[Header]
    peer_chain: Sequence[x509.Certificate] = ()
    path: str = "/"


@dataclass(frozen=True)
class Outcome:
    """Go's `(*authenticator.Response, bool, error)` triple, plus which authenticator answered."""

    user: UserInfo | None = None
    authenticator: str | None = None
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.user is not None

    @property
    def error(self) -> str | None:
        return aggregate_error(self.errors)


NO_OPINION = Outcome()


def aggregate_error(messages: Sequence[str]) -> str | None:
    """`utilerrors.NewAggregate(errs).Error()` (`k8s.io/apimachinery pkg/util/errors`).

    One error prints as itself; several print de-duplicated, comma-separated, in brackets.
    """
    if not messages:
        return None
    if len(messages) == 1:
        return messages[0]
    unique = list(dict.fromkeys(messages))
    if len(unique) == 1:
        return unique[0]
    return "[" + ", ".join(unique) + "]"


class RequestHeaderVerifier:
    """`x509request.Verifier` wrapping the header authenticator (`NewDynamicVerifyOptionsSecure`).

    No client certificate: no opinion, headers ignored. A certificate that does not verify against
    the front-proxy CA, or whose CN is not allowed: an error. Otherwise the headers decide.
    """

    name: str = REQUESTHEADER

    def __init__(
        self,
        roots: x509verify.CertPool,
        allowed_names: Sequence[str],
        headers: RequestHeaderAuthenticator,
    ) -> None:
        self.roots = roots
        self.allowed_names = tuple(allowed_names)
        self.headers = headers

    def authenticate(self, req: AuthRequest) -> Outcome:
        if not req.peer_chain:
            return NO_OPINION
        try:
            x509verify.verify_peer_chain(req.peer_chain, self.roots)
            x509verify.verify_subject(req.peer_chain[0], self.allowed_names)
        except x509verify.VerifyError as e:
            return Outcome(errors=(str(e),))
        user, req.headers = self.headers.authenticate_and_clear(req.headers)
        if user is None:
            return NO_OPINION
        return Outcome(user=user, authenticator=self.name)


def credential_id(cert: x509.Certificate) -> str:
    """The `authentication.kubernetes.io/credential-id` extra x509.go adds (since 1.32)."""
    der = cert.public_bytes(serialization.Encoding.DER)
    return "X509SHA256=" + hashlib.sha256(der).hexdigest()


class ClientCertAuthenticator:
    """`x509request.Authenticator` with `CommonNameUserConversion` (--client-ca-file).

    User = subject CN, groups = subject O values, extra = credential id. An empty CN is no opinion.
    UID parsing from the subject (feature gate AllowParsingUserUIDFromCertAuth, alpha in 1.33) is
    not emulated.
    """

    name: str = X509

    def __init__(self, roots: x509verify.CertPool) -> None:
        self.roots = roots

    def authenticate(self, req: AuthRequest) -> Outcome:
        if not req.peer_chain:
            return NO_OPINION
        leaf = req.peer_chain[0]
        try:
            x509verify.verify_peer_chain(req.peer_chain, self.roots)
        except x509verify.VerifyError as e:
            ident = x509verify.certificate_identifier(leaf)
            return Outcome(errors=(f"verifying certificate {ident} failed: {e}",))
        cn = x509verify.common_name(leaf)
        if not cn:
            return NO_OPINION
        user = UserInfo(
            name=cn,
            groups=tuple(x509verify.organizations(leaf)),
            extra={CREDENTIAL_ID_KEY: (credential_id(leaf),)},
        )
        return Outcome(user=user, authenticator=self.name)


def load_token_file(path: str | Path) -> dict[str, UserInfo]:
    """`tokenfile.NewCSV`: token,user,uid[,"group1,group2"]; later duplicates win."""
    tokens: dict[str, UserInfo] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for record in csv.reader(f):
            if len(record) < 3:
                raise ValueError(
                    f"token file '{path}' must have at least 3 columns"
                    f" (token, user name, user uid), found {len(record)}"
                )
            if not record[0]:
                continue
            groups = tuple(record[3].split(",")) if len(record) >= 4 else ()
            tokens[record[0]] = UserInfo(name=record[1], uid=record[2], groups=groups)
    return tokens


class BearerTokenAuthenticator:
    """`bearertoken.Authenticator` over a static token map.

    Not a bearer header: no opinion. A bearer token nobody recognises: "invalid bearer token".
    On success the Authorization header is deleted.
    """

    name: str = TOKEN

    def __init__(self, tokens: dict[str, UserInfo]) -> None:
        self.tokens = tokens

    def authenticate(self, req: AuthRequest) -> Outcome:
        auth = header_value(req.headers, ["Authorization"]).strip()
        if not auth:
            return NO_OPINION
        parts = auth.split(" ", 2)
        if len(parts) < 2 or parts[0].lower() != "bearer" or not parts[1]:
            return NO_OPINION
        user = self.tokens.get(parts[1])
        if user is None:
            return Outcome(errors=("invalid bearer token",))
        req.headers = clear_authentication_headers(req.headers, ["Authorization"], [], [], [])
        return Outcome(user=user, authenticator=self.name)


def add_authenticated_group(user: UserInfo) -> UserInfo:
    """`AuthenticatedGroupAdder`: append system:authenticated unless anonymous or already marked."""
    if user.name == ANONYMOUS_USER:
        return user
    if ALL_AUTHENTICATED in user.groups or ALL_UNAUTHENTICATED in user.groups:
        return user
    return UserInfo(
        name=user.name, uid=user.uid, groups=(*user.groups, ALL_AUTHENTICATED), extra=user.extra
    )


ANONYMOUS_INFO = UserInfo(name=ANONYMOUS_USER, groups=(ALL_UNAUTHENTICATED,))


@dataclass(frozen=True)
class AuthenticationResult:
    """The filter's view: who the request is, or why it gets a 401.

    `headers` is the request's header list after authentication (authenticators' own cleanup plus
    the filter's), i.e. what a handler behind the filter would see.
    """

    user: UserInfo | None
    authenticator: str | None
    error: str | None
    headers: list[Header] = field(default_factory=list)

    @property
    def authenticated(self) -> bool:
        return self.user is not None


class RequestAuthenticator(Protocol):
    """`authenticator.Request`: anything with a name and `authenticate(AuthRequest) -> Outcome`."""

    @property
    def name(self) -> str: ...

    def authenticate(self, req: AuthRequest) -> Outcome: ...


@dataclass
class AuthenticationChain:
    """The whole chain plus the authentication filter's header cleanup."""

    authenticators: Sequence[RequestAuthenticator]
    anonymous: bool = True
    # The configured front-proxy names, cleared by the filter after any success.
    requestheader: RequestHeaderAuthenticator | None = None

    def authenticate(
        self, headers: Headers, peer_chain: Sequence[x509.Certificate] = (), path: str = "/"
    ) -> AuthenticationResult:
        req = AuthRequest(headers=list(headers), peer_chain=peer_chain, path=path)
        outcome = self._union(req)
        if outcome.ok:
            assert outcome.user is not None
            outcome = Outcome(
                user=add_authenticated_group(outcome.user), authenticator=outcome.authenticator
            )
        elif not outcome.errors and self.anonymous:
            outcome = Outcome(user=ANONYMOUS_INFO, authenticator=ANONYMOUS)
        if not outcome.ok:
            return AuthenticationResult(None, None, outcome.error, req.headers)
        return AuthenticationResult(
            outcome.user, outcome.authenticator, None, self._filter_cleanup(req.headers)
        )

    def _union(self, req: AuthRequest) -> Outcome:
        errors: list[str] = []
        for authenticator in self.authenticators:
            outcome = authenticator.authenticate(req)
            if outcome.errors:
                errors.extend(outcome.errors)
                continue
            if outcome.ok:
                return outcome
        return Outcome(errors=tuple(errors))

    def _filter_cleanup(self, headers: Headers) -> list[Header]:
        cleaned = clear_authentication_headers(headers, ["Authorization"], [], [], [])
        cleaned = clear_authentication_headers(
            cleaned,
            STANDARD_USERNAME_HEADERS,
            STANDARD_UID_HEADERS,
            STANDARD_GROUP_HEADERS,
            STANDARD_EXTRA_HEADER_PREFIXES,
        )
        if self.requestheader is not None:
            cleaned = self.requestheader.clear(cleaned)
        return cleaned


def build_chain(
    *,
    requestheader_client_ca: x509verify.CertPool | None,
    requestheader_allowed_names: Iterable[str] = (),
    requestheader: RequestHeaderAuthenticator | None = None,
    client_ca: x509verify.CertPool | None = None,
    tokens: dict[str, UserInfo] | None = None,
    anonymous: bool = True,
) -> AuthenticationChain:
    """Assemble the chain in kube-apiserver's order from already-loaded configuration."""
    authenticators: list[RequestAuthenticator] = []
    if requestheader_client_ca is not None:
        if requestheader is None:
            raise ValueError("requestheader client CA given without header configuration")
        authenticators.append(
            RequestHeaderVerifier(
                requestheader_client_ca, tuple(requestheader_allowed_names), requestheader
            )
        )
    if client_ca is not None:
        authenticators.append(ClientCertAuthenticator(client_ca))
    authenticators.append(BearerTokenAuthenticator(tokens or {}))
    return AuthenticationChain(
        authenticators=authenticators,
        anonymous=anonymous,
        requestheader=requestheader if requestheader_client_ca is not None else None,
    )
