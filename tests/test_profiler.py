"""The Profiler as the README shows it: a boto3 Session of the application's own, the context
manager in local mode and its flame graph, the local files' names, and the service's ConfigureAgent
answer applied to what is sampled next (the collector's own command line giving that answer)."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path
from typing import Any, Dict, Iterator

import boto3
import psutil
import pytest

from codeguru_agent import Profiler
from codeguru_agent import profiler as lifecycle
from codeguru_agent.collector.server import CollectorOptions, CollectorServer
from reliability.in_process import agent_threads, use_agent_env
from support.collector_client import CollectorHandle, spawn_collector
from support.waiting import wait_until

ACCESS_KEY, SECRET_KEY = "AKIDAPPLICATION", "application-secret"


@pytest.fixture(autouse=True)
def no_agent_left() -> Iterator[None]:
    yield
    lifecycle.stop()
    wait_until(lambda: not agent_threads(), 15, "the agent's threads to end")


@pytest.fixture
def parked() -> Iterator[None]:
    """A thread parked 40 calls deep in ``descend``, so every sample has something deep to cut."""
    release = threading.Event()

    def descend(depth: int) -> None:
        if depth:
            descend(depth - 1)
        else:
            release.wait(60)

    thread = threading.Thread(target=descend, args=(40,), name="parked", daemon=True)
    thread.start()
    yield
    release.set()
    thread.join(10)


def test_an_aws_session_signs_the_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector accepts only the session's keys; the environment's would be refused."""
    options = CollectorOptions(
        port=0, db_path=str(tmp_path / "db"), test_hooks=True, access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )
    with CollectorServer(options) as server:
        collector = CollectorHandle(server.url)
        use_agent_env(monkeypatch, collector, "orders", tmp_path)
        session = boto3.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY, region_name="eu-west-1")
        boto3.client(
            "codeguruprofiler",
            endpoint_url=server.url,
            region_name="eu-west-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        ).create_profiling_group(profilingGroupName="orders")

        profiler = Profiler(aws_session=session)
        assert profiler.start() and profiler.wait_for_sampling(10.0)
        assert profiler.flush(10.0)
        assert profiler.stop()

        assert len(collector.profiles("orders")) >= 1
        assert {request["status"] for request in collector.requests("PostAgentProfile")} == {204}


def test_the_context_manager_profiles_the_block_and_names_its_flame_graph(tmp_path: Path, parked: None) -> None:
    directory = tmp_path / "profiles"

    with Profiler(local_dir=str(directory)) as profiler:
        assert profiler.is_running() and profiler.wait_for_sampling(10.0)
    assert not profiler.is_running()

    page = Path(str(profiler.flamegraph_path))
    assert page == directory.resolve() / "flamegraph.html" and page.is_file()
    assert ":descend" in page.read_text()
    names = sorted(path.name for path in directory.glob("profile-*"))
    pattern = rf"profile-local-\d{{4}}-\d\d-\d\dT\d\d-\d\d-\d\d-{os.getpid()}-[0-9a-f]{{8}}\.json"
    assert names and all(re.fullmatch(pattern, name) for name in names), names


def test_a_local_file_is_named_after_the_group(tmp_path: Path) -> None:
    with Profiler("orders", local_dir=str(tmp_path)) as profiler:
        assert profiler.wait_for_sampling(10.0)

    names = [path.name for path in tmp_path.glob("profile-*")]
    assert names and all(name.startswith("profile-orders-") for name in names), names


def deepest_stack(node: Dict[str, Any]) -> int:
    """Frames on the longest path, not counting the synthetic ones (``<Truncated>``, ``<Sleep>``, ...)."""
    return max(
        (int(not name.startswith("<")) + deepest_stack(child) for name, child in (node.get("children") or {}).items()),
        default=0,
    )


COLLECTOR_ANSWER = (
    "--auto-create",
    "--should-profile",
    "true",
    "--period",
    "2",
    "--agent-parameter",
    "SamplingIntervalInMilliseconds=40",
    "--agent-parameter",
    "MaxStackDepth=5",
    "--agent-parameter",
    "MemoryUsageLimitPercent=1",
)


def test_the_collectors_answer_is_applied_to_what_is_sampled_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parked: None
) -> None:
    with spawn_collector(str(tmp_path / "db"), *COLLECTOR_ANSWER) as collector:
        use_agent_env(monkeypatch, collector, "created-on-first-call", tmp_path)
        profiler = Profiler()
        assert profiler.start()
        wait_until(lambda: profiler.config.max_stack_depth == 5, 30, "the ConfigureAgent answer to apply")
        config = profiler.config
        assert (config.reporting_interval_ms, config.sampling_interval_ms) == (2000, 40.0)
        assert config.memory_limit_mb == pytest.approx(psutil.virtual_memory().total / 100 / 2**20)
        profiler.flush(10.0)  # what was sampled before the answer
        assert profiler.wait_for_sampling(10.0)
        count = len(collector.profiles("created-on-first-call"))
        wait_until(lambda: len(collector.profiles("created-on-first-call")) > count, 30, "a profile after the answer")
        assert profiler.stop()

        answer = collector.requests("ConfigureAgent")[0]
        assert answer["status"] == 200
        after = collector.profiles("created-on-first-call")[count:]
        for entry in after:
            document = entry["document"]
            assert deepest_stack(document["callgraph"]) <= 5, "stacks cut to MaxStackDepth"
            assert "<Truncated>" in document["callgraph"]["children"]
            assert document["debugInfo"]["genericMetrics"]["samplingIntervalInMs_configured"] == 40.0
        full = [entry["document"]["agentMetadata"]["durationInMs"] for entry in after[:-1]]
        assert all(duration_ms >= 2000 for duration_ms in full), "profiles every periodInSeconds"


def test_an_option_you_set_is_kept_against_the_collectors_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parked: None
) -> None:
    with spawn_collector(str(tmp_path / "db"), *COLLECTOR_ANSWER) as collector:
        use_agent_env(monkeypatch, collector, "orders", tmp_path, sampling_interval_ms=25)
        profiler = Profiler(max_stack_depth=8)
        assert profiler.start()
        wait_until(lambda: profiler.config.reporting_interval_ms == 2000, 30, "the ConfigureAgent answer to apply")
        assert (profiler.config.max_stack_depth, profiler.config.sampling_interval_ms) == (8, 25.0)
        assert profiler.wait_for_sampling(10.0) and profiler.flush(10.0)
        assert profiler.stop()

        documents = [entry["document"] for entry in collector.profiles("orders")]
        assert max(deepest_stack(document["callgraph"]) for document in documents) == 8
