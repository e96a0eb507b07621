"""A Lambda function's code, decorated: ``_HANDLER=app.handler``."""

from __future__ import annotations

from typing import Any

import workload

import codeguru_agent


@codeguru_agent.with_lambda_profiler()
def handler(event: Any, context: Any) -> Any:
    return workload.run(event, context)
