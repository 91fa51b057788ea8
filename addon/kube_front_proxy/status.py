"""Error responses as the Kubernetes API server writes them: a v1 Status object.

Byte for byte like k8s.io/apiserver's responsewriters (json.Encoder adds the final newline), so
kubectl prints a clean error instead of an HTML page.
"""

from __future__ import annotations

import json
import math

from mitmproxy import http

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    413: "RequestEntityTooLarge",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int, message: str, reason: str | None = None, details: dict[str, object] | None = None
) -> bytes:
    status: dict[str, object] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "InternalError"),
    }
    if details:
        status["details"] = details
    status["code"] = code
    return json.dumps(status, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def status_headers() -> dict[str, str]:
    return {"Content-Type": "application/json", "Cache-Control": "no-cache, private"}


def status_response(code: int, message: str, reason: str | None = None) -> http.Response:
    return http.Response.make(code, status_body(code, message, reason), status_headers())


def unauthorized(realm: str) -> http.Response:
    """401 with the API server's own body, plus the Basic challenge kubectl expects."""
    response = status_response(401, "Unauthorized")
    response.headers["WWW-Authenticate"] = f'Basic realm="{realm}"'
    return response


# client-go waits Retry-After seconds and sends the request again, up to 10 times: a lock of
# hours would hang kubectl for days. Longer waits are in the Status body only, and kubectl
# says at once that the login was refused.
RETRY_AFTER_HEADER_MAX = 60


def too_many_requests(retry_after: float) -> http.Response:
    """429 as the API server sends it."""
    seconds = max(1, math.ceil(retry_after))
    body = status_body(
        429, "too many failed logins, try again later", details={"retryAfterSeconds": seconds}
    )
    response = http.Response.make(429, body, status_headers())
    if seconds <= RETRY_AFTER_HEADER_MAX:
        response.headers["Retry-After"] = str(seconds)
    return response


# What the proxy says when mitmproxy itself fails a request (seam/error_pages.py): a fixed
# message per status code. mitmproxy's own message holds internals (upstream address,
# certificate details) and goes to the log only.
PROXY_ERRORS = {
    400: "the request could not be parsed",
    413: "the request is too large",
    502: "the Kubernetes API server could not be reached",
    504: "the Kubernetes API server did not answer in time",
}


def proxy_error_body(code: int) -> bytes:
    return status_body(code, PROXY_ERRORS.get(code, "the proxy could not complete the request"))


def proxy_error_response(code: int) -> http.Response:
    return http.Response.make(code, proxy_error_body(code), status_headers())
