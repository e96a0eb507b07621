"""Run each measurement in its own subprocess, with a timeout, and collect its JSON result.

A child prints one line ``RESULT {json}`` on stdout as its last act; anything else it prints (an
agent's logs, warnings) is kept only for the error message. A child that fails, times out or prints
no result becomes a :class:`Outcome` with ``error`` set, so one broken agent never stops the suite.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Final, Iterable, Iterator, List, Mapping, Optional, Sequence

HERE: Final = Path(__file__).resolve().parent
OUT_DIR: Final = HERE / "out"
RESULT_PREFIX: Final = "RESULT "
DUMMY_AWS_ENV: Final = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}
"""Credentials no service accepts: every agent talks only to a sink on 127.0.0.1."""


@dataclass
class Outcome:
    """One child's result, or why there is none."""

    value: Dict[str, Any] = field(default_factory=dict)
    error: Optional[str] = None
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


def python() -> str:
    """The interpreter of the benchmark venv (the one running the suite)."""
    return sys.executable


def run_child(script: str, args: Sequence[str], timeout_s: float, env: Optional[Mapping[str, str]] = None) -> Outcome:
    """Run ``python script args`` in benchmarks/ and parse its RESULT line."""
    child_env = dict(os.environ)
    child_env.update(DUMMY_AWS_ENV)
    child_env["PYTHONDONTWRITEBYTECODE"] = "1"
    if env:
        child_env.update(env)
    started = time.perf_counter()
    try:
        done = subprocess.run(
            [python(), str(HERE / script), *args],
            cwd=HERE,
            env=child_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return Outcome(error=f"timed out after {timeout_s:.0f} s", wall_s=time.perf_counter() - started)
    wall = time.perf_counter() - started
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            value = json.loads(line[len(RESULT_PREFIX) :])
            if "error" in value:
                return Outcome(error=str(value["error"]), wall_s=wall)
            return Outcome(value=value, wall_s=wall)
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return Outcome(error=f"exit {done.returncode}: " + " | ".join(tail)[-300:], wall_s=wall)


def child_main(measure: Callable[[argparse.Namespace], Dict[str, Any]], parser: argparse.ArgumentParser) -> None:
    """Entry point of a child: parse, measure, print the RESULT line, and leave at once.

    ``os._exit`` skips the agents' exit hooks (flushes, joins), which are no part of any measurement
    and would only make a run slower or hang it.
    """
    args = parser.parse_args()
    try:
        value = measure(args)
    except Exception as error:  # report any failure as data: the suite shows it in the table
        value = {"error": f"{type(error).__name__}: {error}"}
    sys.stdout.write(RESULT_PREFIX + json.dumps(value) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def alternate(arms: Sequence[str], runs: int) -> Iterable[tuple[int, str]]:
    """(run, arm) pairs, reversing the arms' order every other run so neither always goes first."""
    for run in range(runs):
        for arm in arms if run % 2 == 0 else list(reversed(arms)):
            yield run, arm


def median(values: Iterable[float]) -> Optional[float]:
    """The median, or None when there is nothing to take it of."""
    data = [v for v in values if v is not None]
    return statistics.median(data) if data else None


def collect(outcomes: Sequence[Outcome], key: str) -> List[float]:
    """One figure from every successful outcome."""
    return [float(o.value[key]) for o in outcomes if o.ok and o.value.get(key) is not None]


def first_error(outcomes: Sequence[Outcome]) -> Optional[str]:
    """Why an arm has no figure: the first error, when no run succeeded."""
    if any(o.ok for o in outcomes):
        return None
    return next((o.error for o in outcomes if o.error), "no run")


def log(message: str) -> None:
    """Progress on stderr, so stdout keeps only the tables."""
    print(message, file=sys.stderr, flush=True)


class Endpoint:
    """A server process on 127.0.0.1 that prints ``listening on URL`` first; stopped on exit."""

    def __init__(self, command: Sequence[str], startup_timeout_s: float = 20.0, kind: str = "sink") -> None:
        self.kind = kind
        self._command = list(command)
        self._timeout_s = startup_timeout_s
        self._process: Optional[subprocess.Popen[str]] = None
        self.url = ""

    def __enter__(self) -> Endpoint:
        import selectors

        self._process = subprocess.Popen(
            self._command,
            cwd=HERE,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert self._process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self._process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + self._timeout_s
        while time.monotonic() < deadline and self._process.poll() is None:
            if selector.select(timeout=0.2):
                line = self._process.stdout.readline()
                if line.startswith("listening on "):
                    self.url = line.split("listening on ", 1)[1].strip()
                    return self
        self.__exit__()
        raise RuntimeError(f"{' '.join(self._command[:4])} did not say 'listening on' in {self._timeout_s:.0f} s")

    def counts(self) -> Dict[str, Any]:
        """The sink's request counts (empty for servers that do not keep them)."""
        import urllib.request

        try:
            with urllib.request.urlopen(self.url + "/__counts", timeout=5) as answer:
                return dict(json.loads(answer.read()))
        except (OSError, ValueError):
            return {}

    def __exit__(self, *exc: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def sink() -> Endpoint:
    """The accept-everything sink."""
    return Endpoint([python(), str(HERE / "sink.py")])


@contextlib.contextmanager
def codeguru_endpoint() -> Iterator[Endpoint]:
    """Our collector when it can run, otherwise the sink: a CodeGuru endpoint on 127.0.0.1."""
    OUT_DIR.mkdir(exist_ok=True)
    database = OUT_DIR / f"collector-{os.getpid()}.db"
    database.unlink(missing_ok=True)
    endpoint = Endpoint(
        [python(), "-m", "codeguru_agent.collector", "--port", "0", "--db", str(database), "--auto-create"],
        startup_timeout_s=15,
        kind="collector",
    )
    try:
        endpoint.__enter__()
    except (RuntimeError, OSError):
        endpoint = sink().__enter__()
    try:
        yield endpoint
    finally:
        endpoint.__exit__()
        database.unlink(missing_ok=True)
