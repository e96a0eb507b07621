"""SigV4 verification, for a collector that is started with an access key and secret key.

The signature is recomputed with botocore's own SigV4Auth over exactly what was received (method,
raw path and query, the headers the client says it signed, the body), using the client's own
X-Amz-Date, and compared in constant time. botocore is imported only when keys are configured.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from email.message import Message
from typing import Final, List, Optional

SERVICE: Final = "codeguru-profiler"
MAX_SKEW_S: Final = 15 * 60
"""How far X-Amz-Date may be from the collector's clock, as AWS allows: limits replays."""
_AUTHORIZATION: Final = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/(?P<service>[^/,\s]+)"
    r"/aws4_request\s*,\s*SignedHeaders=(?P<headers>[a-z0-9;_.-]+)\s*,\s*Signature=(?P<signature>[0-9a-f]{64})"
)
_AMZ_DATE: Final = re.compile(r"\d{8}T\d{6}Z")


class AuthError(Exception):
    """A request that fails authentication: answered 403 with ``code`` and the message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Keys:
    """The one access key the collector accepts, and its secret."""

    access_key: str
    secret_key: str


def region_of(authorization: Optional[str]) -> Optional[str]:
    """The region in a SigV4 Authorization header's credential scope, signed or not."""
    match = _AUTHORIZATION.match(authorization or "")
    return match.group("region") if match else None


def verify(keys: Keys, method: str, raw_path: str, headers: Message, body: bytes) -> None:
    """Raise :class:`AuthError` unless the request carries a valid SigV4 signature made with ``keys``."""
    authorization = headers.get("Authorization")
    if not authorization:
        raise AuthError("AccessDeniedException", "the request is not signed: this collector requires SigV4 signatures")
    match = _AUTHORIZATION.match(authorization)
    if match is None:
        raise AuthError("AccessDeniedException", "the Authorization header is not a SigV4 (AWS4-HMAC-SHA256) signature")
    if not hmac.compare_digest(match.group("key").encode(), keys.access_key.encode()):
        raise AuthError("UnrecognizedClientException", "the access key id is not the one this collector accepts")
    if match.group("service") != SERVICE:
        raise AuthError(
            "InvalidSignatureException",
            f"the credential scope names service {match.group('service')!r}, not {SERVICE!r}",
        )
    signed = match.group("headers").split(";")
    if "host" not in signed or "x-amz-date" not in signed:
        raise AuthError("InvalidSignatureException", "the signature must cover the host and x-amz-date headers")
    amz_date = headers.get("X-Amz-Date", "")
    if not _AMZ_DATE.fullmatch(amz_date) or amz_date[:8] != match.group("date"):
        raise AuthError(
            "InvalidSignatureException", f"X-Amz-Date {amz_date!r} is missing or does not match the credential scope"
        )
    skew_s = abs(time.time() - calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")))
    if skew_s > MAX_SKEW_S:
        raise AuthError(
            "InvalidSignatureException",
            f"Signature expired: X-Amz-Date {amz_date} is more than 15 minutes from the collector's clock",
        )
    declared_hash = headers.get("X-Amz-Content-SHA256")
    if "x-amz-content-sha256" in signed and declared_hash != hashlib.sha256(body).hexdigest():
        raise AuthError("InvalidSignatureException", "X-Amz-Content-SHA256 does not match the body")
    expected = _signature(keys, match.group("region"), method, raw_path, headers, signed, body, amz_date)
    if not hmac.compare_digest(expected.encode(), match.group("signature").encode()):
        raise AuthError(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided. "
            "Check your AWS Secret Access Key and signing method.",
        )


def _signature(
    keys: Keys, region: str, method: str, raw_path: str, headers: Message, signed: List[str], body: bytes, amz_date: str
) -> str:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    request = AWSRequest(method=method, url=f"http://{headers.get('Host', '')}{raw_path}", data=body)
    for name in signed:
        for value in headers.get_all(name) or ():
            request.headers[name] = value
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(keys.access_key, keys.secret_key), SERVICE, region)
    canonical_request = signer.canonical_request(request)
    return str(signer.signature(signer.string_to_sign(request, canonical_request), request))
