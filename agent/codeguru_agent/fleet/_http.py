"""A small HTTP client for the local metadata services (EC2 IMDS, ECS task metadata).

Standard library only, so detection never imports boto3. It never goes through a proxy (these
services are link-local), speaks only http and https, follows no redirect, and holds one lookup to
a short connect timeout and one deadline for all its requests: a host that is not on the platform
gives its answer in about a second at worst.
"""

from __future__ import annotations

import functools
import http.client
import json
import ssl
import time
import urllib.request
from typing import Any, Final, Mapping, Optional
from urllib.parse import urlsplit

from codeguru_agent.host import native

CONNECT_TIMEOUT_S: Final = 0.3
TOTAL_TIMEOUT_S: Final = 1.0
MAX_BODY_BYTES: Final = 1 << 20
MAX_VALUE_CHARS: Final = 255
"""The longest identifier the service takes (``FleetInstanceId`` is 1 to 255 characters)."""


class MetadataError(Exception):
    """A metadata service gave no usable answer; the message says what happened."""


class _Connection(http.client.HTTPConnection):
    """Connects within the connect timeout, then reads with the request's own timeout."""

    def __init__(self, host: str, *, connect_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(host, **kwargs)
        self._connect_timeout_s = connect_timeout_s

    def connect(self) -> None:
        native.prepare_agent_hub()  # under gevent: this thread's lookups never need a thread pool
        read_timeout_s = self.timeout
        self.timeout = (
            self._connect_timeout_s if read_timeout_s is None else min(self._connect_timeout_s, read_timeout_s)
        )
        try:
            super().connect()
        finally:
            self.timeout = read_timeout_s
        self.sock.settimeout(read_timeout_s)


class _TLSConnection(_Connection, http.client.HTTPSConnection):
    """The same for https; the TLS handshake counts as part of connecting."""


class _Handler(urllib.request.AbstractHTTPHandler):
    def __init__(self, connect_timeout_s: float) -> None:
        super().__init__()
        self._connect_timeout_s = connect_timeout_s

    http_request = https_request = urllib.request.AbstractHTTPHandler.do_request_

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_Connection, connect_timeout_s=self._connect_timeout_s), req)

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        # Made here, not up front: loading the CA store costs milliseconds, and IMDS and ECS speak http.
        tls = ssl.create_default_context()
        return self.do_open(
            functools.partial(_TLSConnection, connect_timeout_s=self._connect_timeout_s, context=tls), req
        )


class MetadataClient:
    """Requests to one metadata service, all within one deadline that starts here."""

    def __init__(
        self, base_url: str, *, connect_timeout_s: float = CONNECT_TIMEOUT_S, total_timeout_s: float = TOTAL_TIMEOUT_S
    ) -> None:
        try:
            parts = urlsplit(base_url)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:
            valid = False
        if not valid:
            raise MetadataError(f"{base_url!r} is not an http or https URL")
        self._base_url = base_url.rstrip("/")
        self._deadline = time.monotonic() + total_timeout_s
        # Only our handler: no proxy, no redirect, no file: or ftp: URLs, statuses checked below.
        self._opener = urllib.request.OpenerDirector()
        self._opener.add_handler(_Handler(connect_timeout_s))

    def request(self, path: str, *, method: str = "GET", headers: Optional[Mapping[str, str]] = None) -> bytes:
        """The body of a 200 answer to ``method`` on ``path``; anything else raises MetadataError."""
        url = self._base_url + path
        remaining_s = self._deadline - time.monotonic()
        if remaining_s <= 0:
            raise MetadataError(f"{method} {url}: out of time")
        request = urllib.request.Request(url, method=method, headers=dict(headers or {}))
        try:
            with self._opener.open(request, timeout=remaining_s) as response:
                status = response.status
                body: bytes = response.read(MAX_BODY_BYTES + 1)
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise MetadataError(f"{method} {url}: {error!r}") from None
        if status != 200:
            raise MetadataError(f"{method} {url}: HTTP {status}")
        if len(body) > MAX_BODY_BYTES:
            raise MetadataError(f"{method} {url}: answer larger than {MAX_BODY_BYTES} bytes")
        return body

    def get_json(self, path: str) -> Any:
        """The JSON document at ``path``."""
        body = self.request(path)
        try:
            return json.loads(body)
        except ValueError as error:
            raise MetadataError(f"GET {self._base_url + path}: not JSON ({error})") from None


def text_value(raw: Any, what: str, max_chars: int = MAX_VALUE_CHARS) -> str:
    """A printable identifier from a metadata answer, or MetadataError saying which one is wrong."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    text = raw.strip() if isinstance(raw, str) else ""
    if not text or not text.isprintable() or len(text) > max_chars:
        raise MetadataError(f"{what} is empty, too long or not printable: {raw!r}")
    return text
