"""The collector's viewer routes (not API operations): the index of groups, a group's profile page
with its range picker and comparison, and the exports offered as downloads.

``GET /`` lists the groups with their latest profile; ``GET /profilingGroups/{name}/flamegraph.html``
takes the range as GetProfile does (``startTime``, ``endTime``, ``period``) and, for a comparison,
a baseline range in ``compareStartTime`` and ``compareEndTime``; ``GET /profilingGroups/{name}/export``
adds ``format`` (collapsed, speedscope or pprof). A range without profiles is an empty page whose
picker still works, not an error.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Final, NamedTuple, Optional, Tuple
from urllib.parse import quote, urlencode

from codeguru_agent.collector import validate
from codeguru_agent.collector.api import ApiError, Request, Response, Service, iso_time
from codeguru_agent.reporting.document import total_count
from codeguru_agent.viewer import flamegraph, html
from codeguru_agent.viewer.model import CallTree

EXPORT_FORMATS: Final = {"collapsed": "collapsed stacks", "speedscope": "speedscope", "pprof": "pprof"}
"""The downloads the page offers, by ``format`` value, with their link text."""
_CONTENT_TYPES: Final = {
    "collapsed": "text/plain; charset=utf-8",
    "speedscope": "application/json",
    "pprof": "application/gzip",
}
_PICKER_GROUPS: Final = 1000
_EMPTY_RANGE_MS: Final = 3_600_000
"""The range a group without any profile shows: the last hour, empty."""


def index(service: Service) -> Response:
    """The front page: every group and the start of its latest profile, linked to its page."""
    groups = [
        (group.name, iso_time(group.latest_profile_start_ms) if group.latest_profile_start_ms is not None else None)
        for group in service.store.groups(0, _PICKER_GROUPS)
    ]
    return Response(200, html.render_index(groups).encode("utf-8"), "text/html; charset=utf-8")


def flamegraph_page(service: Service, request: Request) -> Response:
    """The page of a group's range, compared with a baseline range when one is given."""
    name = _existing_group(service, request)
    current_request = _without_comparison(request)
    current = _aggregate_or_empty(service, current_request, _requested_range(service, current_request))
    baseline_request = _baseline_request(request)
    baseline = (
        _aggregate_or_empty(service, baseline_request, _requested_range(service, baseline_request))
        if baseline_request
        else None
    )
    tree = CallTree([current.document["callgraph"]] + ([baseline.document["callgraph"]] if baseline else []))
    sides = (_describe(current), _describe(baseline)) if baseline else None
    subtitle = f"{sides[0]}, compared with the baseline {sides[1]}" if sides else _describe(current)
    period = request.query.get("period") if not {"startTime", "endTime"} & set(request.query) else None
    picker: Dict[str, Any] = {
        "group": name,
        "groups": [group.name for group in service.store.groups(0, _PICKER_GROUPS)],
        "period": period,
        "startMs": current.requested[0],
        "endMs": current.requested[1],
        "compareStartMs": baseline.requested[0] if baseline else None,
        "compareEndMs": baseline.requested[1] if baseline else None,
    }
    range_query = {"startTime": iso_time(current.requested[0]), "endTime": iso_time(current.requested[1])}
    exports = [
        (label, f"/profilingGroups/{quote(name, safe='')}/export?{urlencode(dict(range_query, format=fmt))}")
        for fmt, label in EXPORT_FORMATS.items()
    ]
    page = html.render_page(tree, name, subtitle, sides=sides, collector=picker, exports=exports)
    return Response(200, page.encode("utf-8"), "text/html; charset=utf-8")


def export(service: Service, request: Request) -> Response:
    """The merged range in one export format, as a download named after the group and range."""
    name = _existing_group(service, request)
    output_format = request.query.get("format")
    if output_format not in EXPORT_FORMATS:
        raise validate.Invalid(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {output_format!r}")
    aggregate = service.aggregate(request)
    body = flamegraph.render([aggregate.document], name, output_format)
    stamp = iso_time(aggregate.start_ms)[:19].replace(":", "-")
    filename = f"{name}-{stamp}{flamegraph.SUFFIXES[output_format]}"
    return Response(200, body, _CONTENT_TYPES[output_format], filename=filename)


def _existing_group(service: Service, request: Request) -> str:
    name = str(request.group_name)
    if service.store.group(name) is None:
        raise ApiError("ResourceNotFoundException", f"no profiling group named {name!r}")
    return name


def _without_comparison(request: Request) -> Request:
    query = {key: value for key, value in request.query.items() if not key.startswith("compare")}
    return dataclasses.replace(request, query=query)


def _baseline_request(request: Request) -> Optional[Request]:
    """The request for the baseline range, when the request names both ends of one."""
    start, end = request.query.get("compareStartTime"), request.query.get("compareEndTime")
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise validate.Invalid("give both compareStartTime and compareEndTime for a comparison")
    return dataclasses.replace(request, query={"startTime": start, "endTime": end})


def _requested_range(service: Service, request: Request) -> Tuple[int, int]:
    """The range the request asks for; the last hour when it names none and the group has no profile."""
    try:
        return service.time_range(str(request.group_name), request.query)
    except ApiError:
        end_ms = service.clock_ms()
        return end_ms - _EMPTY_RANGE_MS, end_ms


class _Shown(NamedTuple):
    """A range's merged profiles (empty when it has none) and the range that was asked for."""

    document: Dict[str, Any]
    profile_count: int
    start_ms: int
    end_ms: int
    requested: Tuple[int, int]


def _aggregate_or_empty(service: Service, request: Request, requested: Tuple[int, int]) -> _Shown:
    try:
        found = service.aggregate(request)
    except ApiError as error:
        if error.code != "ResourceNotFoundException":
            raise
        empty = {"start": requested[0], "end": requested[1], "callgraph": {}}
        return _Shown(empty, 0, requested[0], requested[1], requested)
    return _Shown(found.document, found.profile_count, found.start_ms, found.end_ms, requested)


def _describe(aggregate: _Shown) -> str:
    count = aggregate.profile_count
    samples = total_count(aggregate.document["callgraph"])
    return (
        f"{count} profile{'s' if count != 1 else ''}, {samples:,} samples, "
        f"{iso_time(aggregate.start_ms)} to {iso_time(aggregate.end_ms)}"
    )
