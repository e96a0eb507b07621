"""The CodeGuru Profiler operations the collector serves, with the botocore model's exact shapes.

Each operation takes a parsed :class:`Request` (URI label, query, headers, body) and returns a
:class:`Response` or raises :class:`ApiError`; HTTP framing and routing live in ``server.py``.
Shapes, locations and status codes follow ``botocore/data/codeguruprofiler/2019-07-18``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Final, List, Mapping, Optional, Tuple

from codeguru_agent.collector import auth, validate
from codeguru_agent.collector.store import Group, Store, StoredProfile
from codeguru_agent.reporting import deepjson, encoding
from codeguru_agent.reporting.document import merge_callgraph, walk_callgraph

AGENT_PARAMETERS: Final = (
    "SamplingIntervalInMilliseconds",
    "ReportingIntervalInMilliseconds",
    "MinimumTimeForReportingInMilliseconds",
    "MemoryUsageLimitPercent",
    "MaxStackDepth",
)
"""The model's AgentParameterField values: the only keys of ``agentParameters``."""
METADATA_FIELDS: Final = (
    "ComputePlatform",
    "AgentId",
    "AwsRequestId",
    "ExecutionEnvironment",
    "LambdaFunctionArn",
    "LambdaMemoryLimitInMB",
    "LambdaRemainingTimeInMilliseconds",
    "LambdaTimeGapBetweenInvokesInMilliseconds",
    "LambdaPreviousExecutionTimeInMilliseconds",
)
COMPUTE_PLATFORMS: Final = ("Default", "AWSLambda")
AGGREGATION_PERIODS_MS: Final = {"PT5M": 300_000, "PT1H": 3_600_000, "P1D": 86_400_000}
DEFAULT_PERIOD_S: Final = 300
DEFAULT_PAGE_SIZE: Final = 100
MAX_RANGE_MS: Final = 7 * 86_400_000
"""GetProfile's longest time range, as the service documents it."""
ACCOUNT_ID: Final = "000000000000"
DEFAULT_REGION: Final = "us-east-1"
_STATUS_BY_CODE: Final = {
    "ValidationException": 400,
    "ServiceQuotaExceededException": 402,
    "ResourceNotFoundException": 404,
    "ConflictException": 409,
    "ThrottlingException": 429,
    "InternalServerException": 500,
}


class ApiError(Exception):
    """An error answer in the rest-json shape: status, ``x-amzn-ErrorType`` code, ``{"message"}``."""

    def __init__(self, code: str, message: str, status: Optional[int] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else _STATUS_BY_CODE.get(code, 400)


@dataclass(frozen=True)
class Request:
    """One API request as the server parsed it; header names are lower case."""

    operation: str
    group_name: Optional[str]
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Response:
    """An answer to send: status, body and its Content-Type; a ``filename`` makes it a download."""

    status: int
    body: bytes = b""
    content_type: Optional[str] = None
    filename: Optional[str] = None


def json_response(status: int, value: Any) -> Response:
    return Response(status, json.dumps(value).encode("utf-8"), encoding.JSON_CONTENT_TYPE)


def iso_time(ms: int) -> str:
    """Epoch milliseconds as the model's iso8601 timestamp, e.g. ``2020-06-01T13:15:02.001Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


class AgentConfigurations:
    """What ConfigureAgent answers: the group's own setting, overridden globally, then per group.

    Overrides come from start options (the global layer's initial values) and from the test hooks
    at run time; each update merges into its layer, and a null value removes that override.
    """

    def __init__(
        self,
        should_profile: Optional[bool] = None,
        period_s: Optional[int] = None,
        agent_parameters: Optional[Mapping[str, str]] = None,
    ) -> None:
        self._lock = threading.Lock()
        self._layers: Dict[Optional[str], Dict[str, Any]] = {None: {"agentParameters": {}}}
        self.update(
            {
                "shouldProfile": should_profile,
                "periodInSeconds": period_s,
                "agentParameters": dict(agent_parameters or {}),
            }
        )

    def update(self, change: Any) -> Dict[str, Any]:
        """Merge a change ``{profilingGroupName?, shouldProfile?, periodInSeconds?, agentParameters?}``;
        returns the layer as it now is. Raises :class:`validate.Invalid`."""
        if not isinstance(change, dict):
            raise validate.Invalid("the agent configuration must be a JSON object")
        unknown = set(change) - {"profilingGroupName", "shouldProfile", "periodInSeconds", "agentParameters"}
        if unknown:
            raise validate.Invalid(f"unknown keys: {', '.join(sorted(unknown))}")
        group = change.get("profilingGroupName")
        if group is not None:
            validate.name(group)
        should_profile = change.get("shouldProfile")
        if should_profile is not None and not isinstance(should_profile, bool):
            raise validate.Invalid(f"shouldProfile must be true, false or null, got {should_profile!r}")
        period_s = change.get("periodInSeconds")
        if period_s is not None and (isinstance(period_s, bool) or not isinstance(period_s, int) or period_s < 1):
            raise validate.Invalid(f"periodInSeconds must be a positive integer or null, got {period_s!r}")
        parameters = change.get("agentParameters") or {}
        if not isinstance(parameters, dict):
            raise validate.Invalid("agentParameters must be an object")
        for name, value in parameters.items():
            if name not in AGENT_PARAMETERS:
                raise validate.Invalid(f"unknown agent parameter {name!r}: use one of {', '.join(AGENT_PARAMETERS)}")
            if value is not None and (isinstance(value, bool) or not isinstance(value, (str, int))):
                raise validate.Invalid(f"agentParameters.{name} must be a string, an integer or null, got {value!r}")
        with self._lock:
            layer = self._layers.setdefault(group, {"agentParameters": {}})
            for key, value in (("shouldProfile", should_profile), ("periodInSeconds", period_s)):
                if key in change or value is not None:
                    _set_or_remove(layer, key, value)
            for name, value in parameters.items():
                _set_or_remove(layer["agentParameters"], name, None if value is None else str(value))
            return {**layer, "agentParameters": dict(layer["agentParameters"])}

    def resolve(self, group: Group) -> Dict[str, Any]:
        """The AgentConfiguration for one group: ``shouldProfile``, ``periodInSeconds``, ``agentParameters``."""
        answer: Dict[str, Any] = {
            "shouldProfile": group.profiling_enabled,
            "periodInSeconds": DEFAULT_PERIOD_S,
            "agentParameters": {},
        }
        with self._lock:
            for layer in (self._layers[None], self._layers.get(group.name, {})):
                for key in ("shouldProfile", "periodInSeconds"):
                    if key in layer:
                        answer[key] = layer[key]
                answer["agentParameters"].update(layer.get("agentParameters", {}))
        return answer


def _set_or_remove(values: Dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        values.pop(key, None)
    else:
        values[key] = value


@dataclass
class Aggregate:
    """Profiles merged over a time range: the resulting document and how many profiles went in."""

    document: Dict[str, Any]
    profile_count: int
    start_ms: int
    end_ms: int


@dataclass
class Service:
    """The operations, over one store; thread-safe because the store and configurations are."""

    store: Store
    configurations: AgentConfigurations = field(default_factory=AgentConfigurations)
    auto_create: bool = False
    max_body_bytes: int = 16 * 2**20
    clock_ms: Callable[[], int] = field(default=lambda: int(time.time() * 1000))

    def handle(self, request: Request) -> Response:
        """Run one operation (or ``FlameGraph``); validation problems become ValidationException."""
        operation = getattr(self, "_" + request.operation)
        try:
            if request.group_name is not None:
                validate.name(request.group_name)
            response: Response = operation(request)
            return response
        except validate.TooLarge as error:
            raise ApiError("ValidationException", str(error), status=413) from None
        except validate.Invalid as error:
            raise ApiError("ValidationException", str(error)) from None

    def _CreateProfilingGroup(self, request: Request) -> Response:
        client_token = validate.token(request.query.get("clientToken"), "clientToken")
        body = json_object(request.body)
        name = validate.name(body.get("profilingGroupName"))
        platform = body.get("computePlatform", "Default")
        if platform not in COMPUTE_PLATFORMS:
            raise validate.Invalid(f"computePlatform must be one of {', '.join(COMPUTE_PLATFORMS)}, got {platform!r}")
        enabled = _profiling_enabled(body.get("agentOrchestrationConfig", {"profilingEnabled": True}))
        tags = body.get("tags", {})
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise validate.Invalid("tags must be an object of string values")
        now = self.clock_ms()
        region = auth.region_of(request.headers.get("authorization")) or DEFAULT_REGION
        candidate = _new_group(name, platform, enabled, tags, client_token, now, region)
        group, created = self.store.create_group(candidate)
        if not created and group.client_token != client_token:
            raise ApiError("ConflictException", f"profiling group {name!r} already exists")
        return json_response(201, _description(group))

    def _DescribeProfilingGroup(self, request: Request) -> Response:
        return json_response(200, _description(self._group(request)))

    def _ListProfilingGroups(self, request: Request) -> Response:
        include = validate.boolean(request.query.get("includeDescription"), "includeDescription")
        limit = validate.integer(request.query.get("maxResults"), "maxResults", 1, 1000) or DEFAULT_PAGE_SIZE
        after = _page_token(request.query.get("nextToken"))
        groups = self.store.groups(after or 0, limit + 1)
        page = groups[:limit]
        answer: Dict[str, Any] = {"profilingGroupNames": [] if include else [group.name for group in page]}
        if include:
            answer["profilingGroups"] = [_description(group) for group in page]
        if len(groups) > limit:
            answer["nextToken"] = str(page[-1].id)
        return json_response(200, answer)

    def _UpdateProfilingGroup(self, request: Request) -> Response:
        body = json_object(request.body)
        if "agentOrchestrationConfig" not in body:
            raise validate.Invalid("agentOrchestrationConfig is required")
        enabled = _profiling_enabled(body["agentOrchestrationConfig"])
        self._group(request)
        group = self.store.update_group(str(request.group_name), enabled, self.clock_ms())
        if group is None:
            raise _no_group(str(request.group_name))
        return json_response(200, _description(group))

    def _DeleteProfilingGroup(self, request: Request) -> Response:
        if not self.store.delete_group(str(request.group_name)):
            raise _no_group(str(request.group_name))
        return Response(204)

    def _ConfigureAgent(self, request: Request) -> Response:
        body = json_object(request.body)
        fleet_instance_id = body.get("fleetInstanceId")
        if fleet_instance_id is not None and (
            not isinstance(fleet_instance_id, str) or not 1 <= len(fleet_instance_id) <= 255
        ):
            raise validate.Invalid("fleetInstanceId must be a string of 1 to 255 characters")
        metadata = body.get("metadata", {})
        if not isinstance(metadata, dict):
            raise validate.Invalid("metadata must be an object of string values")
        for key, value in metadata.items():
            if key not in METADATA_FIELDS:
                raise validate.Invalid(f"unknown metadata field {key!r}: use one of {', '.join(METADATA_FIELDS)}")
            if not isinstance(value, str):
                raise validate.Invalid(f"metadata.{key} must be a string, got {value!r}")
        platform = "AWSLambda" if metadata.get("ComputePlatform") == "AWSLambda" else "Default"
        group = self._group_for_agent(request, platform)
        self.store.record_orchestration(group.name, self.clock_ms())
        return json_response(200, self.configurations.resolve(group))

    def _PostAgentProfile(self, request: Request) -> Response:
        token = request.query.get("profileToken")
        token = validate.token(token, "profileToken") if token is not None else uuid.uuid4().hex
        group = self._group_for_agent(request, "Default")
        content_type = request.headers.get("content-type")
        content_encoding = request.headers.get("content-encoding")
        document = validate.decode_profile(request.body, content_type, content_encoding, self.max_body_bytes)
        start_ms, end_ms = validate.profile_document(document)
        text = encoding.encode_json(document).decode("utf-8")
        stored = StoredProfile(
            0, group.name, token, content_type or "", content_encoding, self.clock_ms(), start_ms, end_ms, text
        )
        self.store.add_profile(stored)
        return Response(204)

    def _GetProfile(self, request: Request) -> Response:
        max_depth = validate.integer(request.query.get("maxDepth"), "maxDepth", 1, 10_000)
        profile_format = _accepted_format(request.headers.get("accept"))
        aggregate = self.aggregate(request)
        if max_depth is not None:
            _trim(aggregate.document["callgraph"], max_depth)
        encoded = encoding.encode(aggregate.document, profile_format)
        return Response(200, encoded.body, encoded.content_type)

    def _ListProfileTimes(self, request: Request) -> Response:
        query = request.query
        period = query.get("period")
        if period not in AGGREGATION_PERIODS_MS:
            raise validate.Invalid(f"period must be one of {', '.join(AGGREGATION_PERIODS_MS)}, got {period!r}")
        start_ms = _required(validate.timestamp_ms(query.get("startTime"), "startTime"), "startTime")
        end_ms = _required(validate.timestamp_ms(query.get("endTime"), "endTime"), "endTime")
        if end_ms <= start_ms:
            raise validate.Invalid("endTime must be after startTime")
        order = query.get("orderBy", "TimestampDescending")
        if order not in ("TimestampDescending", "TimestampAscending"):
            raise validate.Invalid(f"orderBy must be TimestampDescending or TimestampAscending, got {order!r}")
        limit = validate.integer(query.get("maxResults"), "maxResults", 1, 1000) or DEFAULT_PAGE_SIZE
        group = self._group(request)
        times = self.store.profile_times(
            group.name,
            AGGREGATION_PERIODS_MS[period],
            start_ms,
            end_ms,
            ascending=order == "TimestampAscending",
            after=_page_token(query.get("nextToken")),
            limit=limit + 1,
        )
        answer: Dict[str, Any] = {"profileTimes": [{"start": iso_time(ms)} for ms in times[:limit]]}
        if len(times) > limit:
            answer["nextToken"] = str(times[limit - 1])
        return json_response(200, answer)

    def aggregate(self, request: Request) -> Aggregate:
        """Every profile of the group overlapping the requested range, merged into one document."""
        group = self._group(request)
        start_ms, end_ms = self.time_range(group.name, request.query)
        callgraph: Dict[str, Any] = {}
        count = sampled = duration_ms = 0
        first_ms, last_ms = end_ms, start_ms
        for profile in self.store.overlapping(group.name, start_ms, end_ms):
            document = deepjson.loads(profile.document)
            merge_callgraph(callgraph, document["callgraph"])
            metadata = document["agentMetadata"]
            sampled += metadata.get("numTimesSampled", 0)
            duration_ms += metadata.get("durationInMs", 0)
            first_ms, last_ms = min(first_ms, profile.start_ms), max(last_ms, profile.end_ms)
            count += 1
        if not count:
            raise ApiError(
                "ResourceNotFoundException",
                f"no profiles of group {group.name!r} between {iso_time(start_ms)} and {iso_time(end_ms)}",
            )
        document = {
            "start": first_ms,
            "end": last_ms,
            "agentMetadata": {"numTimesSampled": sampled, "durationInMs": duration_ms},
            "callgraph": callgraph,
        }
        return Aggregate(document, count, first_ms, last_ms)

    def _FlameGraph(self, request: Request) -> Response:
        """The range's profile page with its picker and downloads (not an API operation)."""
        from codeguru_agent.collector import pages  # here, not at the top: pages builds on this module

        return pages.flamegraph_page(self, request)

    def _Export(self, request: Request) -> Response:
        """The range's profiles as collapsed stacks, speedscope or pprof (not an API operation)."""
        from codeguru_agent.collector import pages

        return pages.export(self, request)

    def _Index(self, request: Request) -> Response:
        """The front page listing the groups (not an API operation)."""
        from codeguru_agent.collector import pages

        return pages.index(self)

    def time_range(self, group_name: str, query: Mapping[str, str]) -> Tuple[int, int]:
        """[start, end) from 1 or 2 of startTime, endTime and period; the latest ``period`` (PT5M by
        default) when neither time is given, as the model documents."""
        start_ms = validate.timestamp_ms(query.get("startTime"), "startTime")
        end_ms = validate.timestamp_ms(query.get("endTime"), "endTime")
        period_ms = validate.period_ms(query.get("period"))
        if start_ms is not None and end_ms is not None:
            if period_ms is not None:
                raise validate.Invalid("specify one or two of startTime, endTime and period, not all three")
        elif start_ms is not None:
            end_ms = start_ms + _required(period_ms, "endTime or period (with startTime)")
        elif end_ms is not None:
            start_ms = end_ms - _required(period_ms, "startTime or period (with endTime)")
        else:
            latest_ms = self.store.latest_end_ms(group_name)
            if latest_ms is None:
                raise ApiError("ResourceNotFoundException", f"no profiles of group {group_name!r} yet")
            end_ms = latest_ms + 1
            start_ms = end_ms - (period_ms or AGGREGATION_PERIODS_MS["PT5M"])
        if end_ms <= start_ms:
            raise validate.Invalid("endTime must be after startTime")
        if end_ms - start_ms > MAX_RANGE_MS:
            raise validate.Invalid("the time range must not be longer than 7 days")
        return start_ms, end_ms

    def _group(self, request: Request) -> Group:
        name = str(request.group_name)
        group = self.store.group(name)
        if group is None:
            raise _no_group(name)
        return group

    def _group_for_agent(self, request: Request, platform: str) -> Group:
        """The group an agent reports to, created on first use when the collector auto-creates."""
        name = str(request.group_name)
        group = self.store.group(name)
        if group is not None:
            return group
        if not self.auto_create:
            raise _no_group(name, hint=" (start the collector with --auto-create to create groups on first use)")
        region = auth.region_of(request.headers.get("authorization")) or DEFAULT_REGION
        created, _ = self.store.create_group(_new_group(name, platform, True, {}, None, self.clock_ms(), region))
        return created


def _no_group(name: str, hint: str = "") -> ApiError:
    return ApiError("ResourceNotFoundException", f"profiling group {name!r} does not exist{hint}")


def _new_group(
    name: str, platform: str, enabled: bool, tags: Dict[str, str], client_token: Optional[str], now_ms: int, region: str
) -> Group:
    arn = f"arn:aws:codeguru-profiler:{region}:{ACCOUNT_ID}:profilingGroup/{name}"
    return Group(0, name, arn, platform, enabled, tags, client_token, now_ms, now_ms, None, None, None)


def _description(group: Group) -> Dict[str, Any]:
    """A ProfilingGroupDescription."""
    status: Dict[str, Any] = {}
    if group.orchestrated_ms is not None:
        status["latestAgentOrchestratedAt"] = iso_time(group.orchestrated_ms)
    if group.reported_ms is not None:
        status["latestAgentProfileReportedAt"] = iso_time(group.reported_ms)
    if group.latest_profile_start_ms is not None:
        bucket_ms = group.latest_profile_start_ms - group.latest_profile_start_ms % AGGREGATION_PERIODS_MS["PT5M"]
        status["latestAggregatedProfile"] = {"period": "PT5M", "start": iso_time(bucket_ms)}
    return {
        "name": group.name,
        "arn": group.arn,
        "computePlatform": group.compute_platform,
        "agentOrchestrationConfig": {"profilingEnabled": group.profiling_enabled},
        "createdAt": iso_time(group.created_ms),
        "updatedAt": iso_time(group.updated_ms),
        "profilingStatus": status,
        "tags": group.tags,
    }


def json_object(body: bytes) -> Dict[str, Any]:
    """A JSON request body as an object; an empty body is an empty object, as botocore may send none."""
    if not body.strip():
        return {}
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise validate.Invalid(f"request body is not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise validate.Invalid("request body must be a JSON object")
    return value


def _profiling_enabled(config: Any) -> bool:
    if not isinstance(config, dict) or not isinstance(config.get("profilingEnabled"), bool):
        raise validate.Invalid("agentOrchestrationConfig must be an object with a boolean profilingEnabled")
    return bool(config["profilingEnabled"])


def _required(value: Optional[int], field: str) -> int:
    if value is None:
        raise validate.Invalid(f"{field} is required")
    return value


def _page_token(text: Optional[str]) -> Optional[int]:
    """The position a nextToken from an earlier page stands for."""
    if text is None:
        return None
    validate.token(text, "nextToken")
    if not text.isdigit():
        raise validate.Invalid(f"nextToken {text!r} was not issued by this collector")
    return int(text)


def _accepted_format(accept: Optional[str]) -> str:
    """ "json" or "ion" from an Accept header; Ion by default, as the model documents."""
    ranges: List[str] = [encoding.media_type(part) for part in (accept or "").split(",") if part.strip()]
    for media_range in ranges:
        if media_range == encoding.JSON_CONTENT_TYPE:
            return "json"
        if media_range in (encoding.ION_CONTENT_TYPE, "*/*", "application/*"):
            return "ion"
    if ranges:
        raise validate.Invalid(
            f"unsupported Accept {accept!r}: use {encoding.JSON_CONTENT_TYPE} or {encoding.ION_CONTENT_TYPE}"
        )
    return "ion"


def _trim(root: Dict[str, Any], max_depth: int) -> None:
    """Cut the call graph below ``max_depth`` frames, folding each cut subtree's counts into its
    deepest kept frame so that the total number of samples stays the same."""
    pending: List[Tuple[Dict[str, Any], int]] = [(root, 0)]
    while pending:
        node, depth = pending.pop()
        children = node.get("children")
        if not children:
            continue
        if depth < max_depth:
            pending.extend((child, depth + 1) for child in children.values())
            continue
        counts = node.setdefault("counts", {})
        for _, below in walk_callgraph(node):
            for counter, value in (below.get("counts") or {}).items():
                counts[counter] = counts.get(counter, 0) + value
        if not counts:
            del node["counts"]
        del node["children"]
