"""Who is sending: the fleet identity that goes into ConfigureAgent calls and every profile.

``detect()`` is called once when the agent starts, on the agent's own thread (never at import and
never on the host's thread), and picks the first platform that answers: Lambda, ECS/Fargate, EC2,
else a stable per-process default. A provider's ``identity()`` is called for each ConfigureAgent
call and each profile, so a provider whose values change (Lambda, per invocation) stays current.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Final, Mapping, Optional, Protocol, Tuple

logger = logging.getLogger(__name__)

LAMBDA_FUNCTION_NAME_ENV: Final = "AWS_LAMBDA_FUNCTION_NAME"
LAMBDA_TASK_ROOT_ENV: Final = "LAMBDA_TASK_ROOT"
LAMBDA_MEMORY_ENV: Final = "AWS_LAMBDA_FUNCTION_MEMORY_SIZE"
LAMBDA_EXECUTION_ENV: Final = "AWS_EXECUTION_ENV"


@dataclass(frozen=True)
class FleetIdentity:
    """The values the service groups profiles by."""

    fleet_instance_id: str
    fleet_info: Mapping[str, Any]
    configure_agent_metadata: Mapping[str, str] = field(default_factory=dict)


class FleetProvider(Protocol):
    """Anything that can say who this process is, now."""

    def identity(self) -> FleetIdentity: ...


@dataclass(frozen=True)
class StaticProvider:
    """A platform whose identity does not change while the process lives."""

    fleet_identity: FleetIdentity

    def identity(self) -> FleetIdentity:
        return self.fleet_identity


def detect(environ: Optional[Mapping[str, str]] = None) -> FleetProvider:
    """The provider for the first platform that answers: Lambda, ECS/Fargate, EC2, else the default.

    Never raises: a platform whose lookup fails is logged at DEBUG and the next one is tried. Off
    every platform it costs at most one short IMDS timeout, which ``AWS_EC2_METADATA_DISABLED=true``
    skips.
    """
    env = os.environ if environ is None else environ
    platforms: Tuple[Tuple[str, Callable[[Mapping[str, str]], Optional[FleetProvider]]], ...] = (
        ("Lambda", lambda_provider), ("ECS", _ecs_provider), ("EC2", _ec2_provider))
    for platform, lookup in platforms:
        try:
            provider = lookup(env)
        except Exception as error:  # the agent must start whatever a metadata service says
            logger.debug("not identified as %s: %s", platform, error)
            continue
        if provider is not None:
            logger.info("fleet identity: %s %s", platform, provider.identity().fleet_instance_id)
            return provider
    from codeguru_agent.fleet.default import DefaultProvider

    logger.debug("no known platform answered; using a random id for this process")
    return DefaultProvider()


def lambda_provider(environ: Mapping[str, str]) -> Optional[FleetProvider]:
    """Lambda, from the environment alone; None anywhere else.

    The function ARN and the per-invocation metadata need the invocation's context, which only the
    Lambda wrapper has; until it supplies them the function name stands for the ARN.
    """
    function_name = environ.get(LAMBDA_FUNCTION_NAME_ENV)
    if not function_name or not environ.get(LAMBDA_TASK_ROOT_ENV):
        return None
    from codeguru_agent.fleet.default import process_id

    info: Dict[str, Any] = {"computeType": "aws_lambda", "functionName": function_name}
    metadata = {"ComputePlatform": "AWSLambda", "AgentId": process_id()}
    memory_mb = environ.get(LAMBDA_MEMORY_ENV, "")
    if memory_mb.isdigit():
        info["memoryLimitInMB"] = int(memory_mb)
        metadata["LambdaMemoryLimitInMB"] = memory_mb
    execution_env = environ.get(LAMBDA_EXECUTION_ENV)
    if execution_env:
        info["executionEnv"] = execution_env
        metadata["ExecutionEnvironment"] = execution_env
    return StaticProvider(FleetIdentity(function_name, info, metadata))


def _ecs_provider(environ: Mapping[str, str]) -> Optional[FleetProvider]:
    from codeguru_agent.fleet import ecs

    return _static(ecs.lookup(environ))


def _ec2_provider(environ: Mapping[str, str]) -> Optional[FleetProvider]:
    from codeguru_agent.fleet import ec2

    return _static(ec2.lookup(environ))


def _static(identity: Optional[FleetIdentity]) -> Optional[FleetProvider]:
    return None if identity is None else StaticProvider(identity)
