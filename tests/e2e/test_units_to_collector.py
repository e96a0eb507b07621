"""Tasks and greenlets end to end: real servers and programs under the agent, profiles read back from
the collector.

The asyncio stress test and the gevent programs are quick and run on every Python; the two servers
under load (aiohttp, ``gunicorn -k gevent``) take several seconds each and are marked slow.
"""

from __future__ import annotations

import signal
import socket
import socketserver
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Sequence, Set, Tuple

import psutil
import pytest

from codeguru_agent.reporting.document import walk_callgraph
from reliability.helpers import HOST_TIMEOUT_S, agent_env, process_ids
from support.collector_client import CollectorHandle
from support.programs import finish, write_program
from support.waiting import wait_until

APPS = Path(__file__).parent / "apps"
BACKEND_PAUSE_S = 0.05
Paths = Dict[Tuple[str, ...], int]


def short(name: str) -> str:
    return name if name.startswith("<") else name.rsplit(":", 1)[-1]


def self_counts(documents: Sequence[Dict[str, Any]]) -> Paths:
    """Every call-graph path with its own samples, short names, over all documents."""
    paths: Paths = {}
    for document in documents:
        for path, node in walk_callgraph(document["callgraph"]):
            count = int((node.get("counts") or {}).get("WALL_TIME", 0))
            if count:
                key = tuple(short(name) for name in path)
                paths[key] = paths.get(key, 0) + count
    return paths


def metric(documents: Sequence[Dict[str, Any]], name: str) -> float:
    return sum(float(document["debugInfo"]["genericMetrics"].get(name, 0)) for document in documents)


def documents_of(collector: CollectorHandle, group: str) -> List[Dict[str, Any]]:
    return [entry["document"] for entry in collector.profiles(group)]


def assert_clean(documents: Sequence[Dict[str, Any]]) -> None:
    """No tick lost to an error, no task walk that failed."""
    assert documents
    for document in documents:
        assert document["debugInfo"]["errorsCount"].get("samplerErrors", 0) == 0
        assert "taskSamplingErrors" not in document["debugInfo"]["genericMetrics"]


# --- asyncio ------------------------------------------------------------------------------------

CHURN = """
import asyncio, gc, sys, time, weakref

references = []

async def leaf(i):
    if i % 3 == 0:
        await asyncio.sleep(0)
    return i

async def parent(i):
    return await asyncio.gather(leaf(i), leaf(i + 1))

async def main(seconds):
    loop = asyncio.get_running_loop()
    eager = getattr(asyncio, "eager_task_factory", None)
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        if eager is not None:  # 3.12+: half the rounds create eager tasks (the registry's other set)
            loop.set_task_factory(eager if rounds % 2 else None)
        batch = [loop.create_task(parent(i)) for i in range(50)]
        references.extend(weakref.ref(task) for task in batch[::5])
        await asyncio.gather(*batch)
        del batch
        rounds += 1
    print("rounds", rounds)

asyncio.run(main(float(sys.argv[1])))
# A timer sample taken in the loop's last millisecond may still hold the main thread's frames (and
# their locals: the last batch) until the sampling thread's next tick drains it: wait a few ticks.
time.sleep(0.05)
gc.collect()
print("alive", sum(reference() is not None for reference in references), "of", len(references))
"""


def test_tasks_created_and_finished_as_fast_as_possible_while_sampled_every_millisecond(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    group = "TaskChurn"
    collector.create_group(group)
    env = agent_env(
        collector, group, tmp_path, sampling_interval_ms=1, cpu_limit_percent=100, reporting_interval_ms=1000
    )
    program = write_program(tmp_path, CHURN)
    process = subprocess.Popen(
        [sys.executable, "-m", "codeguru_agent", str(program), "3"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = finish(process)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    alive = [line for line in done.stdout_lines if line.startswith("alive")]
    assert alive and alive[0].split()[1] == "0", done.stdout  # every task freed: the agent holds none
    documents = documents_of(collector, group)
    assert_clean(documents)
    assert metric(documents, "taskSamples") > 0
    assert any(
        path[-1] in ("<await gather>", "<await sleep>") or "<task parent>" in path for path in self_counts(documents)
    )


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode("utf-8")


def load(urls: Sequence[str], clients: int, requests: int) -> List[str]:
    """``clients`` threads, each asking ``requests`` times for each url in turn; the failures."""
    failures: List[str] = []

    def client() -> None:
        for index in range(requests):
            try:
                get(urls[index % len(urls)])
            except Exception as error:  # reported by the test
                failures.append(repr(error))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


@pytest.mark.slow
def test_an_aiohttp_server_shows_its_handlers_awaiting_the_backend_under_their_task(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    pytest.importorskip("aiohttp")
    group = "AiohttpServer"
    collector.create_group(group)
    env = agent_env(collector, group, tmp_path, reporting_interval_ms=1000)
    server = subprocess.Popen(
        [sys.executable, "-m", "codeguru_agent", str(APPS / "aiohttp_app.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base = f"http://127.0.0.1:{int(server.stdout.readline())}"
        failures = load([f"{base}/checkout", f"{base}/dashboard"], clients=8, requests=40)
        get(f"{base}/quit")
        done = finish(server)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert failures == [], failures[:5]
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    documents = documents_of(collector, group)
    assert_clean(documents)
    paths = self_counts(documents)

    checkout = {path: count for path, count in paths.items() if "handle_checkout" in path}
    in_task = sum(
        count
        for path, count in checkout.items()
        if any(n.startswith("<task ") for n in path[: path.index("handle_checkout")])
    )
    awaiting = sum(count for path, count in checkout.items() if path[-1].startswith("<await "))
    total = sum(checkout.values())
    assert total > 0 and in_task >= 0.9 * total, checkout  # under its task frame
    assert awaiting >= 0.5 * total, checkout  # most of a request's time is the wait on the backend

    under_dashboard = {
        path[path.index("handle_dashboard") + 1]
        for path in paths
        if "handle_dashboard" in path and path[-1] != "handle_dashboard"
    }
    assert {"<task fetch_user>", "<task fetch_orders>", "<task fetch_prices>"} <= under_dashboard, under_dashboard


# --- gevent -------------------------------------------------------------------------------------

GEVENT_PROGRAM = """
import sys
if sys.argv[1] == "before":
    from gevent import monkey
    monkey.patch_all()
import codeguru_agent
if sys.argv[1] == "before":
    codeguru_agent.start()
else:
    from gevent import monkey  # the agent runs already (python -m codeguru_agent)
    monkey.patch_all()
import socket, time
import gevent

def wait_for_peer(sock):
    return sock.recv(1)

def crunch_without_yielding(seconds):
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        total += sum(i * i for i in range(2_000))
    return total

left, right = socket.socketpair()
waiter = gevent.spawn(wait_for_peer, left)
gevent.sleep(0.05)
crunch_without_yielding(2.5)  # a greenlet agent would never run meanwhile
right.sendall(b"x")
waiter.join()
print("done")
"""


@pytest.mark.parametrize("when", ["before", "after"])
def test_under_gevent_the_agent_samples_from_real_threads_and_shows_waiting_greenlets(
    collector: CollectorHandle, tmp_path: Path, when: str
) -> None:
    pytest.importorskip("gevent")
    group = f"Gevent{when.title()}"
    collector.create_group(group)
    # 100 samples/s whatever the tick costs on a loaded machine: the counts below are about real threads
    env = agent_env(collector, group, tmp_path, reporting_interval_ms=1000, cpu_limit_percent=100)
    program = write_program(tmp_path, GEVENT_PROGRAM)
    command = [sys.executable, str(program), when]
    if when == "after":
        command[1:1] = ["-m", "codeguru_agent"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done = finish(process)
    assert done.returncode == 0 and done.stdout_lines == ["done"], done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    documents = documents_of(collector, group)
    assert_clean(documents)
    paths = self_counts(documents)
    crunching = sum(count for path, count in paths.items() if "crunch_without_yielding" in path)
    # A greenlet agent never runs while the main greenlet crunches: any sample of it shows real threads
    # (a few more than one, as the crunch's 2.5 s of wall time may give the process little CPU on a busy machine)
    assert crunching >= 10, "sampled while the main greenlet never yielded: the agent's threads are real"
    assert not any("_tick" in path or "sample" in path for path in paths), "the agent does not sample itself"
    waiting = [path for path in paths if "<greenlet wait_for_peer>" in path]
    assert waiting and all(path[path.index("<greenlet wait_for_peer>") + 1] == "wait_for_peer" for path in waiting)
    assert metric(documents, "greenletSamples") >= 10


ENDS_FIRST = """
from gevent import monkey
monkey.patch_all()
import codeguru_agent
profiler = codeguru_agent.start()
assert profiler is not None and profiler.wait_for_sampling(10)
print("done")  # before the agent has loaded boto3: its first request is made at exit
"""


def test_under_gevent_a_program_that_ends_before_the_agents_first_request_still_delivers_its_profile(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    """The agent's client uses gevent's sockets from its own thread; its first request, made at
    interpreter exit, must not need what cannot start then (gevent's resolver thread pool: "can't
    register atexit after shutdown"). A CPU-bound program that keeps the agent from its setup until
    it ends is the same case: the flaky ``[before]`` test above under load."""
    pytest.importorskip("gevent")
    group = "GeventEndsFirst"
    collector.create_group(group)
    env = agent_env(collector, group, tmp_path, shutdown_timeout_ms=30000)
    process = subprocess.Popen(
        [sys.executable, str(write_program(tmp_path, ENDS_FIRST))],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    done = finish(process)
    assert done.returncode == 0 and done.stdout_lines == ["done"], done.stderr
    assert "Traceback" not in done.stderr and "WARNING" not in done.stderr, done.stderr
    assert_clean(documents_of(collector, group))


class SlowBackend(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


class SlowHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.recv(1)
        threading.Event().wait(BACKEND_PAUSE_S)
        self.request.sendall(b"ok")


@pytest.fixture
def backend() -> Iterator[int]:
    server = SlowBackend(("127.0.0.1", 0), SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join()


def workers_of(master: int) -> Set[int]:
    try:
        return {child.pid for child in psutil.Process(master).children()}
    except psutil.NoSuchProcess:
        return set()


def said(server: subprocess.Popen[str]) -> str:
    """What the server said before it was stopped: why a worker's profile never came."""
    server.kill()
    _stdout, stderr = server.communicate()
    return f"every worker's profile; the server said: {stderr[-3000:]}"


@pytest.mark.slow
def test_gunicorn_gevent_workers_are_each_profiled_with_greenlets_waiting_on_the_backend(
    collector: CollectorHandle, tmp_path: Path, backend: int
) -> None:
    pytest.importorskip("gevent")
    group = "GunicornGevent"
    workers = 2
    collector.create_group(group)
    env = agent_env(collector, group, tmp_path, reporting_interval_ms=1000, shutdown_timeout_ms=3000)
    env["BACKEND_PORT"] = str(backend)
    env["PYTHONPATH"] = str(APPS) + ":" + env["PYTHONPATH"]
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    listening.listen(128)
    listening.set_inheritable(True)
    fd = listening.fileno()
    graceful_timeout_s = 30
    command = [
        sys.executable, "-m", "codeguru_agent", "-m", "gunicorn",
        "--worker-class", "gevent", "--workers", str(workers), "--bind", f"fd://{fd}",
        "--graceful-timeout", str(graceful_timeout_s), "--config", str(APPS / "gevent_conf.py"), "gevent_app:app",
    ]  # fmt: skip
    server = subprocess.Popen(
        command, env=env, pass_fds=(fd,), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base = "http://127.0.0.1:%d" % listening.getsockname()[1]
    try:
        pids = wait_until(
            lambda: len(workers_of(server.pid)) == workers and workers_of(server.pid), HOST_TIMEOUT_S, "workers"
        )
        wait_until(lambda: get(f"{base}/slow").startswith("ok"), HOST_TIMEOUT_S, "the first answer")
        failures = load([f"{base}/slow"], clients=16, requests=25)
        wait_until(lambda: pids <= set(process_ids(collector.profiles(group))), HOST_TIMEOUT_S, lambda: said(server))
        server.send_signal(signal.SIGTERM)
        _stdout, stderr = server.communicate(timeout=graceful_timeout_s / 3)  # far from the graceful timeout
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
        listening.close()
    assert failures == [], failures[:5]
    assert server.returncode == 0, stderr
    assert "Traceback" not in stderr and "WORKER TIMEOUT" not in stderr, stderr
    print(stderr)
    assert "disabled" not in stderr, stderr  # no worker's agent gave up during its patch_all
    documents = documents_of(collector, group)
    assert_clean(documents)
    paths = self_counts(documents)
    in_slow = {path: count for path, count in paths.items() if "slow" in path}
    under_greenlet = {p: c for p, c in in_slow.items() if any(n.startswith("<greenlet ") for n in p[: p.index("slow")])}
    waiting = sum(count for path, count in under_greenlet.items() if "recv" in path[path.index("query_backend") :])
    assert waiting >= 0.5 * sum(in_slow.values()), in_slow  # the wait on the backend, under the greenlet
    assert metric(documents, "greenletSamples") > 0
