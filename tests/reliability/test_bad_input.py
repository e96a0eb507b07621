"""Bad input never hurts the host: each bad environment value is one WARNING naming the variable,
the value and the value used instead, and the agent runs with it; a configuration the agent cannot
work with (bad ARN or group, no credentials, no region) is one WARNING and a disabled agent; frames
the agent cannot describe never break a sample."""

from __future__ import annotations

import logging
import os
import threading
import types
from pathlib import Path
from typing import Any, Callable, Dict, Final, Iterator, List, Tuple

import pytest

import codeguru_agent
from codeguru_agent import config as configuration
from reliability.helpers import agent_env, assert_each_token_once, error_count, host_script, run_host
from reliability.in_process import use_agent_env
from reliability.test_exit import WORK_AND_EXIT
from support.collector_client import CollectorHandle

GROUP = "BadInput"
PREFIX = configuration.ENV_PREFIX

BAD_VALUES: Dict[str, Tuple[str, ...]] = {
    PREFIX + "GROUP_NAME": ("has space", "x" * 256, "gr\u00fcppe"),
    PREFIX + "TARGET_REGION": ("   ",),
    PREFIX + "ENABLED": ("maybe", "2"),
    PREFIX + "SAMPLING_INTERVAL_MS": ("fast", "-5", "0", "1e9", "nan"),
    PREFIX + "REPORTING_INTERVAL_MS": ("soon", "-1", "10", "1e15", "60000.5"),
    PREFIX + "FORMAT": ("xml", ""),
    PREFIX + "MAX_STACK_DEPTH": ("deep", "-1", "0", "1e9", "3.5"),
    PREFIX + "MAX_THREADS": ("many", "-1", "0", "1e9"),
    PREFIX + "KILLSWITCH_FILE": ("", "  "),
    PREFIX + "CPU_LIMIT_PERCENT": ("low", "-1", "0", "1000", "inf"),
    PREFIX + "MEMORY_LIMIT_MB": ("big", "-1", "0", "1e12"),
    PREFIX + "LOCAL_DIR": (" ",),
    PREFIX + "SHUTDOWN_TIMEOUT_MS": ("never", "-1", "1e12"),
    PREFIX + "LOG_LEVEL": ("LOUD", "5"),
    PREFIX + "BACKLOG_MAX_PROFILES": ("lots", "-1", "0", "1e9"),
    PREFIX + "BACKLOG_MAX_MB": ("huge", "-1", "0", "1e9"),
    PREFIX + "SPOOL_DIR": ("  ",),
    PREFIX + "AUTO_CREATE_GROUP": ("perhaps",),
    PREFIX + "ASYNCIO_TASKS": ("sometimes", "2"),
    PREFIX + "MAX_TASKS": ("all", "-1", "0", "1e9", "2.5"),
    PREFIX + "MAIN_THREAD_TIMER": ("sometimes", "2"),
    "AWS_ENDPOINT_URL_CODEGURUPROFILER": ("  ",),
}
ANY_TEXT_IS_VALID = {PREFIX + "EXCLUDED_THREADS"}
"""A comma-separated list of thread names: every string is one."""
NOT_STARTED = {
    PREFIX + "GROUP_NAME": "without a group the agent cannot start: see the disable tests below",
    "AWS_ENDPOINT_URL_CODEGURUPROFILER": "botocore reads this variable too, and fails on it itself",
}
OPTION_BY_ENV = {option.env: option for option in configuration.OPTIONS if option.env}


def test_every_environment_variable_has_bad_values_here() -> None:
    assert set(OPTION_BY_ENV) == set(BAD_VALUES) | ANY_TEXT_IS_VALID


def agent_warnings(caplog: pytest.LogCaptureFixture) -> List[str]:
    return [
        r.getMessage() for r in caplog.records if r.name.startswith("codeguru_agent") and r.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize("variable, value", [(env, value) for env, values in BAD_VALUES.items() for value in values])
def test_a_bad_value_is_one_warning_and_the_agent_runs_with_the_fallback(
    collector: CollectorHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    variable: str,
    value: str,
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path, shutdown_timeout_ms=2000)
    monkeypatch.setenv(variable, value)
    option = OPTION_BY_ENV[variable]
    fallback = configuration.AgentConfig._field_defaults[option.field]
    with caplog.at_level(logging.WARNING, logger="codeguru_agent"):
        profiler = codeguru_agent.Profiler()
        first_value = value == BAD_VALUES[variable][0]
        if first_value and variable not in NOT_STARTED:
            assert profiler.start() and profiler.is_running()
            assert profiler.stop()

    warnings = agent_warnings(caplog)
    assert len(warnings) == 1, warnings
    assert variable in warnings[0] and repr(value) in warnings[0], warnings[0]
    assert f"using {'none' if fallback is None else fallback} instead" in warnings[0], warnings[0]
    assert getattr(profiler.config, option.field) == fallback


DISABLED = {
    "malformed-arn": (
        {PREFIX + "GROUP_ARN": "arn:aws:codeguru-profiler:us-east-1:123:profilingGroup/x"},
        [PREFIX + "GROUP_NAME"],
        "GROUP_ARN",
    ),
    "invalid-group-name": ({PREFIX + "GROUP_NAME": "has space"}, [], "GROUP_NAME"),
    "no-credentials": ({}, ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"], "credentials"),
    "no-region": ({}, ["AWS_DEFAULT_REGION", "AWS_REGION", "AWS_ENDPOINT_URL_CODEGURUPROFILER"], "region"),
}


@pytest.mark.parametrize("case", list(DISABLED))
def test_an_unusable_configuration_is_one_warning_and_a_disabled_agent(
    collector: CollectorHandle, tmp_path: Path, case: str
) -> None:
    collector.create_group(GROUP)
    extra, removed, named = DISABLED[case]
    env = agent_env(collector, GROUP, tmp_path)
    env.update(extra)
    for name in removed:
        env.pop(name, None)
    run = run_host(host_script(tmp_path, WORK_AND_EXIT), env)

    run.assert_host_intact(f"sum {sum(i * i for i in range(200_000))}\n", 5)
    assert len(run.agent_warnings) == 1 and named in run.agent_warnings[0], run.agent_warnings
    assert collector.requests("ConfigureAgent") == [] and collector.requests("PostAgentProfile") == []


# --- frames the agent cannot describe --------------------------------------------------------------


def parker(source_name: str, code_changes: Dict[str, Any], namespace: Dict[str, Any]) -> Callable[..., Any]:
    """A function ``parked(event)`` compiled under ``source_name``, its code object then changed."""
    exec(compile("def parked(event):\n    event.wait(30)\n", source_name, "exec"), namespace)
    function = namespace["parked"]
    if code_changes:
        function = types.FunctionType(function.__code__.replace(**code_changes), namespace, "parked")
    return function


ODD_FRAMES: Dict[str, Callable[[], Callable[..., Any]]] = {
    "exec-string": lambda: parker("<string>", {}, {}),
    "frozen": lambda: parker("<frozen odd.module>", {}, {}),
    "no-file-no-name": lambda: parker("", {"co_name": ""}, {}),
    "no-module-globals": lambda: parker("/nowhere/generated.py", {}, {"__builtins__": __builtins__}),
    "undecodable-file-name": lambda: parker(os.fsdecode(b"/srv/caf\xe9/app.py"), {}, {}),
    "called-from-c": lambda: lambda event: sorted([2, 1], key=lambda item: event.wait(30) and item),
}


@pytest.fixture
def odd_threads() -> Iterator[List[str]]:
    release = threading.Event()
    threads = [
        threading.Thread(target=make(), args=(release,), name=f"odd-{name}", daemon=True)
        for name, make in ODD_FRAMES.items()
    ]
    for thread in threads:
        thread.start()
    yield [thread.name for thread in threads]
    release.set()
    for thread in threads:
        thread.join(10)


@pytest.mark.parametrize("profile_format", ["json", "ion"])
def test_frames_the_agent_cannot_describe_never_break_a_sample(
    collector: CollectorHandle,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    odd_threads: List[str],
    profile_format: str,
) -> None:
    collector.create_group(GROUP)
    use_agent_env(monkeypatch, collector, GROUP, tmp_path, profile_format=profile_format)
    profiler = codeguru_agent.start()
    assert profiler is not None
    assert profiler.flush(10.0), "the profile with the odd frames was delivered"
    profiler.stop()

    entries = assert_each_token_once(collector, GROUP)
    assert all(error_count(entry, name) == 0 for entry in entries for name in ("samplerErrors", "uploaderErrors"))
    waiting = [path for entry in entries for path in callers_of_event_wait(entry["document"]["callgraph"])]
    parked = {path[-1] for path in waiting if path[-2] == THREAD_RUN}
    assert len(parked) == len(ODD_FRAMES) - 1, sorted(parked)  # one distinct frame per odd code object
    through_c = [path for path in waiting if len(path) >= 3 and path[-3] == THREAD_RUN]
    assert any(path[-2].endswith(":<lambda>") and path[-1].endswith(":<lambda>") for path in through_c), waiting


THREAD_RUN: Final = "threading:Thread:run"


def callers_of_event_wait(callgraph: Dict[str, Any]) -> List[Tuple[str, ...]]:
    """The path of frame names down to each caller of ``threading.Event.wait``."""
    paths: List[Tuple[str, ...]] = []
    pending: List[Tuple[Tuple[str, ...], Dict[str, Any]]] = [((), callgraph)]
    while pending:
        path, node = pending.pop()
        for name, child in (node.get("children") or {}).items():
            if name == "threading:Event:wait":
                paths.append(path)
            pending.append((path + (name,), child))
    return paths
