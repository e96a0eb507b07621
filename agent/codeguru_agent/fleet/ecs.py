"""ECS and Fargate: the task's identity from the task metadata endpoint, version 4.

The endpoint's variable is read when the lookup runs; the official agent read it at import, so a
value set after importing the agent was never seen (its weakness #27).
"""

from __future__ import annotations

import logging
import math
from typing import Any, Dict, Final, Mapping, Optional

from codeguru_agent.fleet import FleetIdentity
from codeguru_agent.fleet._http import (
    CONNECT_TIMEOUT_S,
    MAX_VALUE_CHARS,
    TOTAL_TIMEOUT_S,
    MetadataClient,
    MetadataError,
    text_value,
)

logger = logging.getLogger(__name__)

URI_ENV: Final = "ECS_CONTAINER_METADATA_URI_V4"
COMPUTE_TYPE: Final = "aws_fargate_task"
MAX_ARN_CHARS: Final = 2048
_LIMITS: Final = (("cpuLimit", "CPU"), ("memoryLimitInMB", "Memory"))
"""fleetInfo key and the task document's ``Limits`` key, in the order the official agent writes them."""


def lookup(
    environ: Mapping[str, str],
    *,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    total_timeout_s: float = TOTAL_TIMEOUT_S,
) -> Optional[FleetIdentity]:
    """This task's identity; None off ECS, MetadataError if the endpoint does not answer usefully."""
    uri = environ.get(URI_ENV)
    if not uri:
        return None
    client = MetadataClient(uri, connect_timeout_s=connect_timeout_s, total_timeout_s=total_timeout_s)
    task = client.get_json("/task")
    if not isinstance(task, dict):
        raise MetadataError(f"the task metadata is not a JSON object: {type(task).__name__}")
    task_arn = text_value(task.get("TaskARN"), "TaskARN", max_chars=MAX_ARN_CHARS)
    info: Dict[str, Any] = {"computeType": COMPUTE_TYPE, "taskArn": task_arn}
    limits = task.get("Limits")
    if isinstance(limits, dict):
        for key, name in _LIMITS:
            value = limits.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                info[key] = value
    return FleetIdentity(_fleet_instance_id(task_arn), info)


def _fleet_instance_id(task_arn: str) -> str:
    """The task ARN, or its task id when the ARN is longer than the service takes.

    A task ARN holds the cluster name (up to 255 characters), so it can pass the API's limit.
    """
    if len(task_arn) <= MAX_VALUE_CHARS:
        return task_arn
    task_id = task_arn.rsplit("/", 1)[-1]
    logger.debug("TaskARN is %d characters long; using the task id %s", len(task_arn), task_id)
    return task_id[-MAX_VALUE_CHARS:]
