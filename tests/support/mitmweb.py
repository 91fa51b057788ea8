"""mitmweb's own HTTP API, as its web UI calls it: a token, the XSRF cookie, JSON bodies."""

from __future__ import annotations

import json
import secrets
import urllib.error
import urllib.request
from typing import Any


class MitmwebClient:
    def __init__(self, port: int, token: str) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.token = token
        # Tornado's XSRF check: a write echoes its cookie's value in a header (any value).
        self.xsrf = secrets.token_hex(16)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Content-Type", "application/json")
        request.add_header("X-XSRFToken", self.xsrf)
        request.add_header("Cookie", f"_mitmproxy_xsrf={self.xsrf}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def options(self) -> dict[str, Any]:
        status, body = self.call("GET", "/options")
        assert status == 200, body
        return {name: o["value"] for name, o in json.loads(body).items()}
