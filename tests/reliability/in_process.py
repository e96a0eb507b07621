"""For the tests that run the agent inside the test process: environment, phases, clean-up."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Dict, List

import pytest

from reliability.helpers import agent_env
from support.collector_client import CollectorHandle


def use_agent_env(
    monkeypatch: pytest.MonkeyPatch, collector: CollectorHandle, group: str, tmp_path: Path, **options: Any
) -> Dict[str, str]:
    """This process's environment as ``agent_env`` makes it for a host program."""
    env = agent_env(collector, group, tmp_path, **options)
    for name in [name for name in os.environ if name not in env]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def agent_threads() -> List[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name.startswith("codeguru-agent")]


class Phases:
    """A thread that runs one named function after another, moving on when told, so a test knows
    which function the sampled stacks can contain at each moment."""

    def __init__(self, *names: str) -> None:
        self._steps = [threading.Event() for _ in names]
        self._namespace: Dict[str, Any] = {}
        source = "".join(f"def {name}(step):\n    step.wait(30)\n" for name in names)
        exec(compile(source, "phases.py", "exec"), self._namespace)
        self._names = names
        self._thread = threading.Thread(target=self._run, name="phases", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for name, step in zip(self._names, self._steps):
            self._namespace[name](step)

    def next(self) -> None:
        """Leave the current phase for the next one."""
        next(step for step in self._steps if not step.is_set()).set()

    def finish(self) -> None:
        for step in self._steps:
            step.set()
        self._thread.join(10)
