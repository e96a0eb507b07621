"""The service's first answer comes first: nothing goes out before ConfigureAgent has answered once,
nothing sampled before an answer that says not to profile ever goes out, and the service's
sampling parameters apply to every sample taken after its answer, and to none before."""

from __future__ import annotations

from pathlib import Path

from codeguru_agent.reporting.document import walk_callgraph
from reliability.helpers import agent_env, host_script, run_host, stored
from support.collector_client import CollectorHandle

GROUP = "FirstAnswer"

BUSY_HOST = """\
import json
import os
import sys
import time
import urllib.request
import codeguru_agent

def nest(depth, seconds):
    if depth:
        return nest(depth - 1, seconds)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass

def configure_requests():
    url = os.environ["AWS_ENDPOINT_URL_CODEGURUPROFILER"] + "/_test/requests?operation=ConfigureAgent"
    with urllib.request.urlopen(url, timeout=30) as answer:
        return len(json.load(answer))

codeguru_agent.start()
nest(40, float(sys.argv[1]))
if len(sys.argv) > 2:  # busy until the collector has answered the agent's ConfigureAgent, then some more
    deadline = time.monotonic() + 60
    while configure_requests() < int(sys.argv[2]) and time.monotonic() < deadline:
        nest(40, 0.1)
    nest(40, float(sys.argv[3]))
print("done")
"""
"""A program busy 40 frames deep for ``argv[1]`` seconds; then, if asked, until the collector has
had ``argv[2]`` ConfigureAgent requests (the last one answered), and ``argv[3]`` seconds more."""


def configure_requests(collector: CollectorHandle) -> int:
    return len(collector.requests("ConfigureAgent"))


def test_nothing_sampled_before_a_first_answer_that_says_not_to_profile_is_posted(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    """ConfigureAgent fails twice, then says ``shouldProfile: false``; meanwhile the agent samples
    and seals a profile every second. None of them may reach the service."""
    collector.create_group(GROUP)
    collector.set_agent_configuration(group=GROUP, should_profile=False)
    collector.fail_next("ConfigureAgent", count=2, status=500)

    run = run_host(
        host_script(tmp_path, BUSY_HOST),
        agent_env(collector, GROUP, tmp_path, reporting_interval_ms=1000),
        args=["1.5", "3", "0.5"],
    )

    run.assert_host_intact("done\n", 0)
    assert collector.requests("PostAgentProfile") == []
    assert stored(collector, GROUP) == []
    assert configure_requests(collector) >= 3, "the service's answer never came"
    assert run.agent_warnings == []


def test_a_program_that_ends_before_the_agent_asks_is_still_refused(collector: CollectorHandle, tmp_path: Path) -> None:
    """The program ends before the agent's first ConfigureAgent: the exit flush asks first."""
    collector.create_group(GROUP)
    collector.set_agent_configuration(group=GROUP, should_profile=False)

    run = run_host(host_script(tmp_path, BUSY_HOST), agent_env(collector, GROUP, tmp_path), args=["0.3"])

    run.assert_host_intact("done\n", 0)
    assert collector.requests("PostAgentProfile") == []
    assert configure_requests(collector) >= 1


def test_without_any_answer_nothing_is_sent_and_the_program_ends_as_usual(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    """ConfigureAgent never answers (it fails every time, as an unreachable endpoint would): the
    program runs and ends as usual, nothing is posted, and one WARNING says why."""
    collector.create_group(GROUP)
    collector.fail_next("ConfigureAgent", count=1000, status=500)

    run = run_host(
        host_script(tmp_path, BUSY_HOST),
        agent_env(collector, GROUP, tmp_path, reporting_interval_ms=1000, shutdown_timeout_ms=2000),
        args=["1.5"],
    )

    run.assert_host_intact("done\n", 0)
    assert collector.requests("PostAgentProfile") == []
    assert len(run.agent_warnings) == 1, run.agent_warnings
    assert "ConfigureAgent never answered" in run.agent_warnings[0] and "not delivered" in run.agent_warnings[0]


def depth(document: dict) -> int:
    return max((len(path) for path, _ in walk_callgraph(document["callgraph"])), default=0)


def test_the_services_sampling_parameters_apply_to_what_is_sampled_after_its_answer(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    """The first answer (delayed by two failures) sets a 50 ms interval and a depth of 8: every
    profile is sampled under one configuration, the ones after the answer under the service's."""
    collector.create_group(GROUP)
    collector.set_agent_configuration(group=GROUP, SamplingIntervalInMilliseconds="50", MaxStackDepth="8")
    collector.fail_next("ConfigureAgent", count=2, status=500)

    run = run_host(
        host_script(tmp_path, BUSY_HOST),
        agent_env(collector, GROUP, tmp_path, reporting_interval_ms=1000),
        args=["1.5", "3", "2.5"],
    )

    run.assert_host_intact("done\n", 0)
    documents = [entry["document"] for entry in stored(collector, GROUP)]
    metrics = [document["debugInfo"]["genericMetrics"] for document in documents]
    before = [doc for doc, m in zip(documents, metrics) if m["samplingIntervalInMs_configured"] == 10.0]
    after = [doc for doc, m in zip(documents, metrics) if m["samplingIntervalInMs_configured"] == 50.0]
    assert before and after and len(before) + len(after) == len(documents)
    assert all(m["samplingIntervalInMs_effective"] >= m["samplingIntervalInMs_configured"] for m in metrics)
    assert all(depth(document) > 40 for document in before), "sampled before the answer: the default depth"
    assert all(depth(document) <= 10 for document in after), "MaxStackDepth 8 (+ <Truncated> and a leaf)"
    assert max(doc["start"] for doc in before) < min(doc["start"] for doc in after)
