"""Test hooks: faults injected into the next requests of an operation, and the journal of requests.

Reliability tests steer the collector through these instead of mocking the client, so an agent's
retry, backoff and token handling run through the same botocore code paths as in production.
"""

from __future__ import annotations

import collections
import threading
from dataclasses import asdict, dataclass
from typing import Any, Deque, Dict, Final, List, Mapping, Optional, Sequence

OPERATIONS: Final = (
    "CreateProfilingGroup",
    "DescribeProfilingGroup",
    "ListProfilingGroups",
    "UpdateProfilingGroup",
    "DeleteProfilingGroup",
    "ConfigureAgent",
    "PostAgentProfile",
    "GetProfile",
    "ListProfileTimes",
)
"""The service operations the collector serves, by their names in the botocore model."""

_CODE_BY_STATUS: Final = {
    400: "ValidationException",
    402: "ServiceQuotaExceededException",
    404: "ResourceNotFoundException",
    409: "ConflictException",
    429: "ThrottlingException",
    500: "InternalServerException",
}
JOURNAL_LIMIT: Final = 10_000
"""The most requests the journal keeps; the oldest are dropped first."""


class FaultError(ValueError):
    """A fault description that cannot be used; str() says why."""


@dataclass(frozen=True)
class Fault:
    """What happens to the next ``count`` requests of ``operation``: a delay, then an error or a drop."""

    operation: str
    count: int = 1
    status: Optional[int] = None
    code: Optional[str] = None
    message: Optional[str] = None
    delay_ms: int = 0
    drop: bool = False

    def __post_init__(self) -> None:
        if self.operation not in OPERATIONS:
            raise FaultError(f"unknown operation {self.operation!r}: use one of {', '.join(OPERATIONS)}")
        if self.count < 1:
            raise FaultError(f"count must be at least 1, got {self.count}")
        if self.status is not None and not 400 <= self.status <= 599:
            raise FaultError(f"status must be an HTTP error status (400 to 599), got {self.status}")
        if self.delay_ms < 0:
            raise FaultError(f"delayMs must not be negative, got {self.delay_ms}")
        if self.status is None and not self.drop and not self.delay_ms:
            raise FaultError("a fault needs a status, a delayMs or drop")

    @property
    def error_code(self) -> str:
        """The error code to answer with: the given one, else the model's error for the status."""
        if self.code:
            return self.code
        status = self.status or 500
        return _CODE_BY_STATUS.get(status, "InternalServerException" if status >= 500 else "ValidationException")

    @property
    def error_message(self) -> str:
        return self.message or f"injected fault for {self.operation}"

    @classmethod
    def from_json(cls, body: Any) -> Fault:
        """A fault from the admin API's JSON: operation, count, status, code, message, delayMs, drop."""
        if not isinstance(body, dict):
            raise FaultError("the fault must be a JSON object")
        unknown = set(body) - {"operation", "count", "status", "code", "message", "delayMs", "drop"}
        if unknown:
            raise FaultError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        if not isinstance(body.get("operation"), str):
            raise FaultError("operation is required: the name of the operation to fail, e.g. PostAgentProfile")
        return cls(
            operation=body["operation"],
            count=_integer(body.get("count", 1), "count"),
            status=None if body.get("status") is None else _integer(body["status"], "status"),
            code=None if body.get("code") is None else str(body["code"]),
            message=None if body.get("message") is None else str(body["message"]),
            delay_ms=_integer(body.get("delayMs") or 0, "delayMs"),
            drop=bool(body.get("drop", False)),
        )

    def to_json(self) -> Dict[str, Any]:
        values = asdict(self)
        values["delayMs"] = values.pop("delay_ms")
        return values


def _integer(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FaultError(f"{field} must be an integer, got {value!r}")
    return int(value)


def parse_status_spec(spec: str) -> Fault:
    """``--fault OPERATION:STATUS[:CODE[:COUNT]]``, e.g. ``PostAgentProfile:500:InternalServerException:2``."""
    parts = spec.split(":")
    if not 2 <= len(parts) <= 4:
        raise FaultError(f"--fault {spec!r}: expected OPERATION:STATUS[:CODE[:COUNT]]")
    return Fault(
        operation=parts[0],
        status=_number(parts[1], spec),
        code=parts[2] if len(parts) > 2 and parts[2] else None,
        count=_number(parts[3], spec) if len(parts) > 3 else 1,
    )


def parse_delay_spec(spec: str) -> Fault:
    """``--fault-delay-ms OPERATION:MILLISECONDS[:COUNT]``: answer late but normally."""
    parts = spec.split(":")
    if not 2 <= len(parts) <= 3:
        raise FaultError(f"--fault-delay-ms {spec!r}: expected OPERATION:MILLISECONDS[:COUNT]")
    return Fault(
        operation=parts[0], delay_ms=_number(parts[1], spec), count=_number(parts[2], spec) if len(parts) > 2 else 1
    )


def parse_drop_spec(spec: str) -> Fault:
    """``--fault-drop OPERATION[:COUNT]``: close the connection without answering."""
    parts = spec.split(":")
    if not 1 <= len(parts) <= 2:
        raise FaultError(f"--fault-drop {spec!r}: expected OPERATION[:COUNT]")
    return Fault(operation=parts[0], drop=True, count=_number(parts[1], spec) if len(parts) > 1 else 1)


def _number(text: str, spec: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise FaultError(f"{spec!r}: {text!r} is not a number") from None


class FaultInjector:
    """Pending faults per operation, consumed first in, first out, one request at a time."""

    def __init__(self, faults: Sequence[Fault] = ()) -> None:
        self._lock = threading.Lock()
        self._pending: Dict[str, Deque[List[Any]]] = collections.defaultdict(collections.deque)
        for fault in faults:
            self.add(fault)

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._pending[fault.operation].append([fault, fault.count])

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def take(self, operation: str) -> Optional[Fault]:
        """The fault for this request of ``operation``, if one is pending; uses up one of its count."""
        with self._lock:
            queue = self._pending.get(operation)
            if not queue:
                return None
            entry = queue[0]
            entry[1] -= 1
            if entry[1] == 0:
                queue.popleft()
            fault: Fault = entry[0]
            return fault

    def pending(self) -> List[Dict[str, Any]]:
        """What is still pending, with the remaining counts, for the admin API's answers."""
        with self._lock:
            return [dict(entry[0].to_json(), count=entry[1]) for queue in self._pending.values() for entry in queue]


class RequestJournal:
    """Every API request received, in order, as the admin API returns it; bounded, oldest dropped first."""

    def __init__(self, limit: int = JOURNAL_LIMIT) -> None:
        self._lock = threading.Lock()
        self._entries: Deque[Dict[str, Any]] = collections.deque(maxlen=limit)

    def record(self, entry: Mapping[str, Any]) -> None:
        with self._lock:
            self._entries.append(dict(entry))

    def entries(self, operation: Optional[str] = None) -> List[Dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._entries if operation is None or entry["operation"] == operation]
