"""The layer handler: profile a Lambda function without changing its code.

Set the function's handler to ``codeguru_agent.aws_lambda.lambda_handler.call_handler`` and put the
real one in ``HANDLER_ENV_NAME_FOR_CODEGURU``, or let the exec wrapper shipped beside this module
(``AWS_LAMBDA_EXEC_WRAPPER``) do both. The real handler is found as Lambda finds it
(``module.function`` or ``path/module.function``, imported from the task root), on the first call.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import Any, Callable, Final, Optional

from codeguru_agent.aws_lambda.decorator import with_lambda_profiler

HANDLER_ENV: Final = "HANDLER_ENV_NAME_FOR_CODEGURU"
LAMBDA_HANDLER_ENV: Final = "_HANDLER"
TASK_ROOT_ENV: Final = "LAMBDA_TASK_ROOT"
THIS_HANDLER: Final = __name__ + ".call_handler"


class HandlerNotFoundError(Exception):
    """The handler in ``HANDLER_ENV_NAME_FOR_CODEGURU`` is missing or cannot be loaded."""


_lock = threading.Lock()
_profiled: Optional[Callable[[Any, Any], Any]] = None


def call_handler(event: Any, context: Any) -> Any:
    """Lambda's entry point in layer mode: the real handler, profiled."""
    handler = _profiled
    if handler is None:
        handler = _load()
    return handler(event, context)


def _load() -> Callable[[Any, Any], Any]:
    global _profiled
    with _lock:
        if _profiled is None:
            _profiled = with_lambda_profiler()(load_handler(os.environ.get(HANDLER_ENV)))
        return _profiled


def load_handler(name: Optional[str]) -> Callable[..., Any]:
    """Import ``module.function`` (or ``path/module.function``) as the Lambda runtime does.

    Raises :class:`HandlerNotFoundError` with the reason, as Lambda fails an invocation whose
    handler it cannot load.
    """
    if not name or not name.strip():
        raise HandlerNotFoundError(
            f"{HANDLER_ENV} is not set: set it to your function's handler (module.function), "
            f"or set AWS_LAMBDA_EXEC_WRAPPER to the codeguru_profiler_lambda_exec script, which sets it"
        )
    name = name.strip()
    module_path, _, function_name = name.rpartition(".")
    if not module_path or not function_name:
        raise HandlerNotFoundError(f"bad handler {name!r} in {HANDLER_ENV}: expected module.function")
    if module_path.replace("/", ".") + "." + function_name == THIS_HANDLER:
        raise HandlerNotFoundError(f"{HANDLER_ENV} names the CodeGuru handler itself; set it to your own handler")
    _restore_lambda_handler(name)
    task_root = os.environ.get(TASK_ROOT_ENV)
    if task_root and task_root not in sys.path:
        sys.path.insert(0, task_root)
    module_name = module_path.replace("/", ".")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:  # import failures of any kind surface as Lambda reports them
        raise HandlerNotFoundError(
            f"unable to import module {module_name!r} for handler {name!r}: {type(error).__name__}: {error}"
        ) from error
    if not hasattr(module, function_name):
        raise HandlerNotFoundError(f"handler {function_name!r} missing on module {module_name!r} ({name!r})")
    handler = getattr(module, function_name)
    if not callable(handler):
        raise HandlerNotFoundError(f"handler {name!r} is a {type(handler).__name__}, not a function")
    return handler


def _restore_lambda_handler(name: str) -> None:
    """Put the real handler back in ``_HANDLER``, where the exec wrapper had put ours."""
    if os.environ.get(LAMBDA_HANDLER_ENV) == THIS_HANDLER:
        os.environ[LAMBDA_HANDLER_ENV] = name
