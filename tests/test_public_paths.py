"""Every import path and command users rely on still works, whatever the layout inside the package.

Each runs in a fresh interpreter with no agent configuration, so importing ``codeguru_agent.auto``
starts nothing (it only warns) and nothing is left running in the test process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

from support.programs import PROGRAM_TIMEOUT_S, clean_env

IMPORTS = """
import importlib.metadata
import inspect
import logging

logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")

import codeguru_agent
from codeguru_agent import Profiler, start, stop, with_lambda_profiler
from codeguru_agent.aws_lambda.lambda_handler import call_handler
import codeguru_agent.auto

assert inspect.isclass(Profiler)
assert callable(start) and callable(stop) and callable(call_handler)
assert codeguru_agent.start is start and codeguru_agent.stop is stop and codeguru_agent.Profiler is Profiler
assert codeguru_agent.auto.profiler is not None and not codeguru_agent.auto.profiler.is_running()
assert codeguru_agent.__version__ == importlib.metadata.version("codeguru-agent")

@with_lambda_profiler(profiling_group_name="G")
def handler(event, context):
    return event["n"] + 1

assert callable(handler) and handler.__name__ == "handler"
print("imported", stop())
"""


def run(command: List[str], tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, env=clean_env(tmp_path), capture_output=True, text=True, timeout=PROGRAM_TIMEOUT_S, check=False
    )


def test_the_public_names_import_from_their_documented_paths(tmp_path: Path) -> None:
    done = run([sys.executable, "-c", IMPORTS], tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout == "imported True\n"
    # auto without a profiling group: one WARNING saying so, and the program carries on
    assert "no profiling group name" in done.stderr


@pytest.mark.parametrize(
    "command, usage",
    [
        ([sys.executable, "-m", "codeguru_agent", "--help"], "(script.py | -m module)"),
        ([sys.executable, "-m", "codeguru_agent.collector", "--help"], "--port"),
        ([str(Path(sys.executable).parent / "codeguru-agent"), "--help"], "commands:"),
    ],
    ids=["python -m codeguru_agent", "python -m codeguru_agent.collector", "console script"],
)
def test_each_command_answers_help(command: List[str], usage: str, tmp_path: Path) -> None:
    done = run(command, tmp_path)

    assert done.returncode == 0, done.stderr
    assert usage in done.stdout
