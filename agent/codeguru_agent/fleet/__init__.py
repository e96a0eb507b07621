"""Who is sending: the fleet identity that goes into ConfigureAgent calls and every profile.

``detect()`` is called once when the agent starts, on the agent's own thread (never at import and
never on the host's thread), and picks the first platform that answers: Lambda, ECS/Fargate, EC2,
else a stable per-process default. A provider's ``identity()`` is called for each ConfigureAgent
call and each profile, so a provider whose values change (Lambda, per invocation) stays current.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol


@dataclass(frozen=True)
class FleetIdentity:
    """The values the service groups profiles by."""

    fleet_instance_id: str
    fleet_info: Mapping[str, Any]
    configure_agent_metadata: Mapping[str, str] = field(default_factory=dict)


class FleetProvider(Protocol):
    """Anything that can say who this process is, now."""

    def identity(self) -> FleetIdentity: ...
