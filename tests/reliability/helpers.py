"""Shared by the reliability tests: host programs in subprocesses and reading back what the collector
received (profiles, tokens, attempts). Polling with deadlines is ``support.waiting.wait_until``,
re-exported here for the tests that import it from this module."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Final, List, Optional, Sequence

from codeguru_agent import config as configuration
from support.collector_client import CollectorHandle, aws_env
from support.waiting import wait_until as wait_until

APPS: Final = Path(__file__).parent / "apps"
HOST_TIMEOUT_S: Final = 60.0
"""The most any host program may take; exceeding it is the failure "the host hung"."""
AGENT_PREFIX: Final = "AGENT "
_FORK_WARNING: Final = "is multi-threaded, use of fork() may lead to deadlocks in the child"

HOST_PRELUDE: Final = f"""\
import logging as _logging, sys as _sys
_handler = _logging.StreamHandler(_sys.stderr)
_handler.setFormatter(_logging.Formatter({AGENT_PREFIX!r} + "%(levelname)s %(name)s: %(message)s"))
_logging.getLogger("codeguru_agent").addHandler(_handler)
del _logging, _sys, _handler
"""
"""Every host program starts with this: the agent's log lines go to stderr, marked, so a test can
tell them from the host's own output (the package logger alone has only a NullHandler)."""


def agent_env(
    collector: Optional[CollectorHandle], group: Optional[str], tmp_path: Path, **options: Any
) -> Dict[str, str]:
    """A subprocess environment: boto3 pointed at ``collector``, the agent configured by option name.

    ``options`` are the agent's option names (``reporting_interval_ms=1000``), mapped to their
    environment variables; the kill switch defaults to a path in ``tmp_path`` that does not exist.
    """
    env = aws_env(collector.url) if collector is not None else aws_env("http://127.0.0.1:9")
    if collector is None:
        del env["AWS_ENDPOINT_URL_CODEGURUPROFILER"]
    for name in [name for name in env if name.startswith(configuration.ENV_PREFIX)]:
        del env[name]
    env[configuration.ENV_PREFIX + "KILLSWITCH_FILE"] = str(tmp_path / "no-killswitch")
    if group is not None:
        env[configuration.ENV_PREFIX + "GROUP_NAME"] = group
    variables = configuration.environment_variables()
    for name, value in options.items():
        env[variables[name]] = str(value)
    env["PYTHONPATH"] = os.pathsep.join([str(APPS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def host_script(tmp_path: Path, body: str, name: str = "host.py") -> Path:
    """Write a host program (the prelude, then ``body`` dedented) and return its path."""
    path = tmp_path / name
    path.write_text(HOST_PRELUDE + textwrap.dedent(body))
    return path


@dataclass(frozen=True)
class HostRun:
    """How a host program ended: its own output, the agent's log lines, and its exit code."""

    stdout: str
    stderr: str
    returncode: int
    pid: int

    @property
    def agent_log(self) -> List[str]:
        return [line[len(AGENT_PREFIX) :] for line in self.stderr.splitlines() if line.startswith(AGENT_PREFIX)]

    @property
    def agent_warnings(self) -> List[str]:
        return [line for line in self.agent_log if line.startswith(("WARNING", "ERROR", "CRITICAL"))]

    @property
    def host_stderr(self) -> List[str]:
        """stderr without the agent's log lines (and their tracebacks' continuation lines).

        Python 3.12+ warns at every ``os.fork()`` of a process that has threads; the agent's threads
        make that warning appear in hosts that fork, so it is left out here (see Known limits in README.md).
        """
        lines: List[str] = []
        skip_next = False
        for line in self.stderr.splitlines():
            if skip_next:
                skip_next = False
                continue
            if line.startswith(AGENT_PREFIX):
                continue
            if _FORK_WARNING in line:
                skip_next = True  # the warning is followed by the source line that forked
                continue
            lines.append(line)
        return lines

    def assert_host_intact(self, stdout: str, returncode: int) -> None:
        """The host printed exactly ``stdout``, nothing of its own on stderr, and exited as it meant to."""
        assert self.host_stderr == [], "\n".join(self.host_stderr)
        assert "Traceback" not in self.stderr, self.stderr
        assert self.stdout == stdout, self.stderr
        assert self.returncode == returncode, self.stderr


class Host:
    """A host program running in a subprocess; it reads stdin, so a test can pace it line by line."""

    def __init__(self, script: Path, env: Dict[str, str], args: Sequence[str] = ()) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(script), *args],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.process.pid

    def send(self, line: str = "") -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def read_line(self) -> str:
        """The host's next line of output (hosts print and flush one line per step they finish)."""
        assert self.process.stdout is not None
        return self.process.stdout.readline()

    def finish(self, timeout_s: float = HOST_TIMEOUT_S, earlier_stdout: str = "") -> HostRun:
        """Close stdin and wait for the exit; a host still running after ``timeout_s`` fails the test."""
        try:
            stdout, stderr = self.process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            stdout, stderr = self.process.communicate()
            raise AssertionError(
                f"the host did not exit within {timeout_s} s\nstdout:\n{stdout}\nstderr:\n{stderr}"
            ) from None
        return HostRun(earlier_stdout + stdout, stderr, self.process.returncode, self.pid)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate()


def run_host(
    script: Path, env: Dict[str, str], args: Sequence[str] = (), stdin: str = "", timeout_s: float = HOST_TIMEOUT_S
) -> HostRun:
    """Run a host program to its end; not ending within ``timeout_s`` is the failure."""
    host = Host(script, env, args)
    assert host.process.stdin is not None
    if stdin:
        host.process.stdin.write(stdin)
    host.process.stdin.close()
    host.process.stdin = None
    return host.finish(timeout_s)


def stored(collector: CollectorHandle, group: str) -> List[Dict[str, Any]]:
    """The group's stored profiles, in arrival order."""
    return collector.profiles(group)


def tokens(entries: Sequence[Dict[str, Any]]) -> List[str]:
    return [entry["profileToken"] for entry in entries]


def attempts(collector: CollectorHandle) -> List[Dict[str, Any]]:
    """Every PostAgentProfile request, in order: ``token``, ``fault`` and ``status``."""
    return [
        {"token": request["query"].get("profileToken"), "fault": request["fault"], "status": request["status"]}
        for request in collector.requests("PostAgentProfile")
    ]


def assert_each_token_once(collector: CollectorHandle, group: str) -> List[Dict[str, Any]]:
    """Every stored token is stored once, and was accepted on the wire once; returns the profiles."""
    entries = stored(collector, group)
    stored_tokens = tokens(entries)
    assert len(stored_tokens) == len(set(stored_tokens)), stored_tokens
    accepted = [attempt["token"] for attempt in attempts(collector) if not attempt["fault"]]
    assert sorted(accepted) == sorted(stored_tokens), "a token was posted again after it was accepted"
    return entries


def assert_consecutive(entries: Sequence[Dict[str, Any]]) -> None:
    """Arrival order is start order, and each profile starts where the one before ended: none lost.

    A profile's interval ends when it is sealed, at ``start + durationInMs`` (nothing was paused in
    these tests), and the next interval starts at that same millisecond.
    """
    starts = [entry["document"]["start"] for entry in entries]
    assert starts == sorted(starts), "profiles were not delivered oldest first"
    for before, after in zip(entries, entries[1:]):
        sealed_at = before["document"]["start"] + before["document"]["agentMetadata"]["durationInMs"]
        assert after["document"]["start"] == sealed_at, "a profile is missing between two delivered ones"


def process_ids(entries: Sequence[Dict[str, Any]]) -> List[int]:
    return [entry["document"]["debugInfo"]["processId"] for entry in entries]


def frame_names(document: Dict[str, Any]) -> List[str]:
    """Every frame name in a document's call graph."""
    names: List[str] = []
    pending = [document["callgraph"]]
    while pending:
        node = pending.pop()
        for name, child in (node.get("children") or {}).items():
            names.append(name)
            pending.append(child)
    return names


def error_count(entry: Dict[str, Any], name: str) -> int:
    return int(entry["document"]["debugInfo"]["errorsCount"].get(name, 0))
