"""A Lambda function's code, unchanged: profiled by the layer handler as ``pkg/plain.handler``."""

from __future__ import annotations

from typing import Any

import workload


def handler(event: Any, context: Any) -> Any:
    return workload.run(event, context)
