"""The test hooks' HTTP API under ``/_test/``: faults, agent configuration, stored profiles, requests.

Served only when the collector runs with test hooks on; tests drive a collector in this process or
in a subprocess the same way, over HTTP.
"""

from __future__ import annotations

from typing import Any, Dict, Final, Mapping, Optional

from codeguru_agent.collector import validate
from codeguru_agent.collector.api import AgentConfigurations, ApiError, Response, json_object, json_response
from codeguru_agent.collector.faults import Fault, FaultError, FaultInjector, RequestJournal
from codeguru_agent.collector.store import Store, StoredProfile
from codeguru_agent.reporting import deepjson, encoding

ROUTES: Final = {
    ("POST", "faults"): "add_fault",
    ("DELETE", "faults"): "clear_faults",
    ("PUT", "agentConfiguration"): "configure",
    ("GET", "profiles"): "profiles",
    ("GET", "requests"): "requests",
}
"""(method, path below /_test/) to the method of :class:`Admin` that serves it."""


class Admin:
    """Serves the ``/_test/`` routes over the collector's own state."""

    def __init__(
        self, store: Store, faults: FaultInjector, journal: RequestJournal, configurations: AgentConfigurations
    ) -> None:
        self._store = store
        self._faults = faults
        self._journal = journal
        self._configurations = configurations

    def handle(self, route: str, query: Mapping[str, str], body: bytes) -> Response:
        try:
            response: Response = getattr(self, route)(query, body)
            return response
        except (FaultError, validate.Invalid) as error:
            raise ApiError("ValidationException", str(error)) from None

    def add_fault(self, query: Mapping[str, str], body: bytes) -> Response:
        self._faults.add(Fault.from_json(json_object(body)))
        return json_response(200, {"pending": self._faults.pending()})

    def clear_faults(self, query: Mapping[str, str], body: bytes) -> Response:
        self._faults.clear()
        return Response(204)

    def configure(self, query: Mapping[str, str], body: bytes) -> Response:
        return json_response(200, self._configurations.update(json_object(body)))

    def profiles(self, query: Mapping[str, str], body: bytes) -> Response:
        group = query.get("profilingGroupName")
        entries = [_profile_entry(profile) for profile in self._store.profiles(group)]
        return Response(200, encoding.encode_json(entries), encoding.JSON_CONTENT_TYPE)

    def requests(self, query: Mapping[str, str], body: bytes) -> Response:
        return json_response(200, self._journal.entries(query.get("operation")))


def _profile_entry(profile: StoredProfile) -> Dict[str, Optional[Any]]:
    return {
        "profileToken": profile.token,
        "profilingGroupName": profile.group_name,
        "contentType": profile.content_type,
        "contentEncoding": profile.content_encoding,
        "receivedAt": profile.received_ms,
        "start": profile.start_ms,
        "end": profile.end_ms,
        "document": deepjson.loads(profile.document),
    }
