"""A real pre-forking server: gunicorn, 4 workers, a Flask app that starts the agent, driven by a
bounded load generator on 127.0.0.1. Every worker is profiled and every request is answered, with
and without ``--preload`` (with it, workers are forked from a master whose agent is just starting)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Iterator, List, Set, Tuple

import psutil
import pytest

from reliability.helpers import HOST_TIMEOUT_S, agent_env, assert_each_token_once, process_ids, stored, wait_until
from support.collector_client import CollectorHandle

GROUP = "PreforkServer"
WORKERS = 4
CLIENTS = 4
REQUESTS_PER_CLIENT = 25
REQUEST_TIMEOUT_S = 10.0
WORK_N = 20_000


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A socket bound and listening before gunicorn starts: no port race; gunicorn gets its fd."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(128)
    server.set_inheritable(True)
    yield server
    server.close()


def get(url: str) -> Tuple[int, str]:
    with urllib.request.urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
        return response.status, response.read().decode("utf-8")


def load(base_url: str) -> Tuple[List[str], List[str]]:
    """CLIENTS threads, REQUESTS_PER_CLIENT requests each: (answers, failures)."""
    answers: List[str] = []
    failures: List[str] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(REQUESTS_PER_CLIENT):
            try:
                status, body = get(f"{base_url}/work/{WORK_N}")
            except Exception as error:  # a stuck or dead worker shows up here, as a timeout or a reset
                with lock:
                    failures.append(repr(error))
                continue
            with lock:
                (answers if status == 200 else failures).append(body)

    threads = [threading.Thread(target=client, name=f"load-{index}") for index in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers, failures


def workers_of(master: int) -> Set[int]:
    try:
        return {child.pid for child in psutil.Process(master).children()}
    except psutil.NoSuchProcess:
        return set()


@pytest.mark.slow
@pytest.mark.parametrize(
    "preload, worker_class", [(True, "sync"), (False, "gthread")], ids=["preload-sync", "no-preload-gthread"]
)
def test_every_worker_is_profiled_and_every_request_answered(
    collector: CollectorHandle, tmp_path: Path, listening_socket: socket.socket, preload: bool, worker_class: str
) -> None:
    collector.create_group(GROUP)
    env = agent_env(collector, GROUP, tmp_path, reporting_interval_ms=1000, shutdown_timeout_ms=3000)
    fd = listening_socket.fileno()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--workers",
        str(WORKERS),
        "--worker-class",
        worker_class,
        "--threads",
        "2",
        "--bind",
        f"fd://{fd}",
        "--timeout",
        "30",
        "--graceful-timeout",
        "10",
        *(["--preload"] if preload else []),
        "flask_app:app",
    ]
    server = subprocess.Popen(
        command, env=env, pass_fds=(fd,), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    base_url = "http://127.0.0.1:%d" % listening_socket.getsockname()[1]
    try:
        workers = wait_until(
            lambda: len(workers_of(server.pid)) == WORKERS and workers_of(server.pid), HOST_TIMEOUT_S, "four workers"
        )
        wait_until(lambda: get(f"{base_url}/work/1")[0] == 200, HOST_TIMEOUT_S, "the first answer")
        answers, failures = load(base_url)
        try:
            wait_until(
                lambda: workers <= set(process_ids(stored(collector, GROUP))),
                HOST_TIMEOUT_S,
                "a profile from every worker",
            )
        except AssertionError as timed_out:  # say which worker, and what the server printed
            for worker in workers_of(server.pid):  # a hung worker outlives its master's kill: none left
                try:
                    psutil.Process(worker).kill()
                except psutil.NoSuchProcess:
                    pass
            server.kill()
            _stdout, stderr = server.communicate()
            delivered = sorted(set(process_ids(stored(collector, GROUP))))
            raise AssertionError(
                f"{timed_out}: workers {sorted(workers)}, profiles from {delivered}, "
                f"{len(answers)} answers, failures {failures[:3]}; the server printed:\n{stderr[-4000:]}"
            ) from None
        server.send_signal(signal.SIGTERM)
        _stdout, stderr = server.communicate(timeout=HOST_TIMEOUT_S)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()

    assert failures == [], failures[:5]
    expected = str(sum(i * i for i in range(WORK_N)))
    assert len(answers) == CLIENTS * REQUESTS_PER_CLIENT
    assert all(answer.split()[0] == expected for answer in answers)
    assert server.returncode == 0, stderr
    assert "Traceback" not in stderr and "WORKER TIMEOUT" not in stderr, stderr
    entries = assert_each_token_once(collector, GROUP)
    pids = set(process_ids(entries))
    assert workers <= pids, "every worker is profiled"
    assert {int(answer.split()[1]) for answer in answers} <= pids
    assert (server.pid in pids) == preload, "the master runs the agent only when it imported the app"
