"""codeguru_agent: a low-overhead Amazon CodeGuru Profiler agent for Python.

Importing this package is cheap and has no side effects: boto3, the sampler and every thread are
loaded only when profiling starts.

    import codeguru_agent
    codeguru_agent.start(profiling_group_name="MyGroup")
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from codeguru_agent.version import VERSION as __version__

__all__ = ["Profiler", "__version__", "start", "stop", "with_lambda_profiler"]

if TYPE_CHECKING:
    from codeguru_agent.aws_lambda.decorator import with_lambda_profiler
    from codeguru_agent.profiler import Profiler, start, stop

# A library logs only where the application says: the command line adds a stderr handler.
logging.getLogger(__name__).addHandler(logging.NullHandler())


def __getattr__(name: str) -> Any:
    """Load the public API on first use, so ``import codeguru_agent`` stays nearly free."""
    if name in ("Profiler", "start", "stop"):
        from codeguru_agent import profiler

        return getattr(profiler, name)
    if name == "with_lambda_profiler":
        from codeguru_agent.aws_lambda.decorator import with_lambda_profiler

        return with_lambda_profiler
    raise AttributeError(f"module 'codeguru_agent' has no attribute {name!r}")
