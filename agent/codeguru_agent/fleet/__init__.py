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
from typing import Any, Callable, Final, Mapping, Optional, Protocol, Tuple

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
        ("Lambda", lambda_provider),
        ("ECS", _ecs_provider),
        ("EC2", _ec2_provider),
    )
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
    """Lambda (the function name and the task root are set); None anywhere else.

    The process's one :class:`~codeguru_agent.fleet.lambda_.LambdaProvider`: the Lambda wrapper
    feeds it each invocation's context (function ARN, request id); until then the function name
    stands for the ARN.
    """
    from codeguru_agent.fleet.lambda_ import provider_for

    return provider_for(environ)


def _ecs_provider(environ: Mapping[str, str]) -> Optional[FleetProvider]:
    from codeguru_agent.fleet import ecs

    return _static(ecs.lookup(environ))


def _ec2_provider(environ: Mapping[str, str]) -> Optional[FleetProvider]:
    from codeguru_agent.fleet import ec2

    return _static(ec2.lookup(environ))


def _static(identity: Optional[FleetIdentity]) -> Optional[FleetProvider]:
    return None if identity is None else StaticProvider(identity)
