"""gunicorn settings for the gevent test: each worker's agent makes its client's SSL context only
once the worker's ``patch_all()`` has patched ``ssl`` (or once the agent holds that patch back).

A worker's agent restarts at the fork and builds its botocore client at once, while the worker runs
``patch_all()``. An SSL context made between gevent's patch of ``ssl`` and the end of ``patch_all()``
by a module that imported the original ``SSLContext`` (botocore, urllib3) recursed until
``RecursionError``, and that worker's agent gave up: seen in the server benchmark, one run in a few.
Here that interleaving is certain, not a matter of timing.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable

HOLD_MAX_S = 10.0


def post_fork(server: Any, worker: Any) -> None:
    """In the worker, before its ``patch_all()``: its agent's uploader builds its client, and makes
    the client's SSL context once ``ssl`` is patched (or the agent holds the patch back)."""
    import botocore.httpsession
    import zope.event
    from gevent import events

    from codeguru_agent.host import native

    ssl_patched = native.Event()

    def on_patch(event: Any) -> None:
        if isinstance(event, events.GeventDidPatchModuleEvent) and event.module_name == "ssl":
            ssl_patched.set()

    zope.event.subscribers.append(on_patch)
    original = botocore.httpsession.create_urllib3_context

    def after_the_ssl_patch(*args: Any, **kwargs: Any) -> Any:
        wait_for(lambda: ssl_patched.is_set() or native.gevent_patch_pending(), native.sleep)
        return original(*args, **kwargs)

    botocore.httpsession.create_urllib3_context = after_the_ssl_patch
    wait_for(_uploader_building_its_client, native.sleep)  # then this worker goes on to its patch_all()


def _uploader_building_its_client() -> bool:
    """True once the agent's uploader thread has loaded botocore and is building its session and
    client, whose credential resolver makes the first SSL context (or once there is no uploader)."""
    from codeguru_agent import profiler

    launch = getattr(profiler._active, "_launch", None)
    if launch is None or not launch.uploader_thread.is_alive():
        return True
    frame = sys._current_frames().get(launch.uploader_thread.ident)
    while frame is not None:
        if frame.f_code.co_name in ("get_credentials", "create_client"):
            return True
        frame = frame.f_back
    return False


def wait_for(condition: Callable[[], bool], sleep: Callable[[float], None]) -> None:
    deadline = time.monotonic() + HOLD_MAX_S
    while not condition() and time.monotonic() < deadline:
        sleep(0.001)  # the OS thread's sleep, whatever gevent has patched
