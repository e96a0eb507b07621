"""The web application of the server benchmark (``servers.py``): the same two endpoints as a Flask
(WSGI) app, for gunicorn's sync and gevent workers, and as a Starlette (ASGI) app, for uvicorn.

``/cpu`` runs a pure-Python loop (a few milliseconds of CPU); ``/wait`` waits 10 ms (``time.sleep``,
which gevent's monkey-patching turns into a greenlet switch, or ``asyncio.sleep``). Each handler
times itself from entry to return, and its thread's CPU time over its own steps (not across the
wait, where the thread runs other requests), and every worker process writes, when it exits, how many
requests each endpoint served, how long its handlers ran and how long it lived to
``$BENCH_STATS_DIR/<pid>.json`` (at exit, or at the ASGI lifespan's end: uvicorn re-raises SIGTERM
after its shutdown, so its exit handlers never run). The handlers' names end in ``cpu_endpoint`` or
``wait_endpoint``: what the benchmark looks for in the profiles.

With ``BENCH_AGENT=official`` each worker starts the official agent when it imports this module,
as that agent's documentation says (``Profiler(...).start()`` in the application); our agent is
started by its launcher instead (``python -m codeguru_agent ... -m gunicorn``), so not here.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import threading
import time
from typing import Any, AsyncIterator, Dict, Final, List

CPU_LOOPS: Final = 20_000
"""About 2-3 ms of CPU on the reference machine."""
WAIT_S: Final = 0.01

_started = time.monotonic()
_stats: Dict[str, List[float]] = {"cpu": [0, 0.0, 0.0], "wait": [0, 0.0, 0.0]}
"""Per endpoint: requests served, seconds in the handler (wall), CPU seconds in the handler."""
_lock = threading.Lock()


def burn(loops: int) -> int:
    """The CPU-bound part: a pure-Python loop."""
    total = 0
    for i in range(loops):
        total = (total * 31 + i) & 0xFFFF
    return total


def _record(endpoint: str, started: float, cpu_s: float) -> None:
    """One request's figures. ``cpu_s`` is the thread's CPU time over the handler's own steps only:
    across a wait (a greenlet switch, an ``await``) the thread runs other requests."""
    elapsed = time.perf_counter() - started
    with _lock:
        entry = _stats[endpoint]
        entry[0] += 1
        entry[1] += elapsed
        entry[2] += cpu_s


def write_stats() -> None:
    """This worker's figures, for the benchmark to read after the server has stopped."""
    directory = os.environ.get("BENCH_STATS_DIR")
    if not directory:
        return
    with _lock:
        endpoints = {
            name: {"requests": int(n), "handler_s": seconds, "handler_cpu_s": cpu}
            for name, (n, seconds, cpu) in _stats.items()
        }
    if not any(entry["requests"] for entry in endpoints.values()):
        return  # the master process, or a worker that served nothing
    figures: Dict[str, Any] = {
        "pid": os.getpid(),
        "endpoints": endpoints,
        "alive_s": time.monotonic() - _started,
    }
    path = os.path.join(directory, f"{os.getpid()}.json")
    with open(path + ".tmp", "w") as handle:
        json.dump(figures, handle)
    os.replace(path + ".tmp", path)


atexit.register(write_stats)


def _start_official_agent() -> Any:
    from datetime import timedelta

    from codeguru_profiler_agent import Profiler

    profiler = Profiler(
        profiling_group_name=os.environ["BENCH_GROUP"],
        region_name="us-east-1",
        environment_override={
            "endpoint_url": os.environ["BENCH_ENDPOINT"],
            "reporting_interval": timedelta(seconds=5),
            "minimum_time_reporting": timedelta(seconds=1),
        },
    )
    profiler.start()
    atexit.register(profiler.stop)  # its last profile, on the way out, as a service would stop it
    return profiler


official_profiler = _start_official_agent() if os.environ.get("BENCH_AGENT") == "official" else None


# --- WSGI: Flask -------------------------------------------------------------------------------

from flask import Flask  # noqa: E402  # after the agent, as the official agent's documentation has it

flask_app = Flask(__name__)


@flask_app.route("/cpu")
def cpu_endpoint() -> str:
    started, cpu = time.perf_counter(), time.thread_time()
    value = burn(CPU_LOOPS)
    _record("cpu", started, time.thread_time() - cpu)
    return str(value)


@flask_app.route("/wait")
def wait_endpoint() -> str:
    started, cpu = time.perf_counter(), time.thread_time()
    before = time.thread_time() - cpu
    time.sleep(WAIT_S)
    cpu = time.thread_time()
    _record("wait", started, before + time.thread_time() - cpu)
    return "ok"


# --- ASGI: Starlette ---------------------------------------------------------------------------

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402


async def async_cpu_endpoint(request: Request) -> PlainTextResponse:
    started, cpu = time.perf_counter(), time.thread_time()
    value = burn(CPU_LOOPS)
    _record("cpu", started, time.thread_time() - cpu)
    return PlainTextResponse(str(value))


async def async_wait_endpoint(request: Request) -> PlainTextResponse:
    started, cpu = time.perf_counter(), time.thread_time()
    before = time.thread_time() - cpu
    await asyncio.sleep(WAIT_S)
    cpu = time.thread_time()
    _record("wait", started, before + time.thread_time() - cpu)
    return PlainTextResponse("ok")


@contextlib.asynccontextmanager
async def _lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    write_stats()
    if official_profiler is not None:
        official_profiler.stop()  # uvicorn's exit skips the exit handlers (see the module's note)


starlette_app = Starlette(
    routes=[Route("/cpu", async_cpu_endpoint), Route("/wait", async_wait_endpoint)],
    lifespan=_lifespan,
)
