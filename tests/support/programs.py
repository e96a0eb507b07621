"""Programs run under the agent's command line in a subprocess, and what they leave behind.

Each test writes a small program, runs it with ``python -m codeguru_agent`` or the ``codeguru-agent``
console script, and reads its output, its exit status and the profile files it wrote.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Final, List, Mapping, Optional, Sequence

from codeguru_agent import config as configuration
from codeguru_agent.reporting.document import walk_callgraph
from codeguru_agent.reporting.encoding import ION_CONTENT_TYPE, JSON_CONTENT_TYPE, decode

PROGRAM_TIMEOUT_S: Final = 60.0
"""A program still running after this long has hung: that is the failure."""
ENTRY_POINTS: Final = ("python -m codeguru_agent", "codeguru-agent run")

CRUNCH: Final = '''
def crunch(seconds):
    """Pure-Python CPU work, long enough for the sampler to see it."""
    import time
    deadline = time.monotonic() + seconds
    total = 0
    while time.monotonic() < deadline:
        total += sum(i * i for i in range(2_000))
    return total
'''
"""Paste into a program that needs its own function to show up in the profile."""


# A program that waits for a signal sleeps in short steps, never in one long sleep. CPython runs a
# Python signal handler only once the main thread is back between bytecodes: a signal that lands
# after the last check and before a blocking call begins is handled when that call returns, with
# one long sleep a minute later. A test sends its signal as soon as it reads the program's "ready"
# line, so exactly then. That is CPython's behaviour for any handler, the agent's or the program's
# (README, known limits); short sleeps bound it without hiding anything of the agent's.


def command(entry: str, args: Sequence[str]) -> List[str]:
    """The command line of one of the two entry points; the console script is the venv's own."""
    if entry == "python -m codeguru_agent":
        return [sys.executable, "-m", "codeguru_agent", *args]
    script = shutil.which("codeguru-agent", path=os.path.dirname(sys.executable))
    if script is None:
        import pytest

        pytest.skip("the codeguru-agent console script is not installed beside this interpreter")
    return [script, "run", *args]


def clean_env(tmp_path: Path, **variables: Any) -> Dict[str, str]:
    """No AWS configuration but dummy credentials, no agent variables but a harmless kill-switch path."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name not in ("PYTHONPATH", "PYTHONWARNINGS")
    }
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    env[configuration.ENV_PREFIX + "KILLSWITCH_FILE"] = str(tmp_path / "no-killswitch")
    env["PYTHONFAULTHANDLER"] = "1"  # a hung program shows where each thread was (see finish())
    env.update({name: str(value) for name, value in variables.items()})
    return env


def write_program(directory: Path, body: str, name: str = "program.py") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(textwrap.dedent(body))
    return path


@dataclass(frozen=True)
class Finished:
    """How a program ended under the agent."""

    stdout: str
    stderr: str
    returncode: int

    @property
    def stdout_lines(self) -> List[str]:
        return self.stdout.splitlines()

    @property
    def warnings(self) -> List[str]:
        """The agent's WARNING (and worse) lines on stderr."""
        return [
            line
            for line in self.stderr.splitlines()
            if line.startswith(("codeguru-agent: WARNING", "codeguru-agent: ERROR", "codeguru-agent: CRITICAL"))
        ]


def run(
    entry: str,
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Optional[Path] = None,
    timeout_s: float = PROGRAM_TIMEOUT_S,
) -> Finished:
    process = subprocess.Popen(
        command(entry, args),
        env=dict(env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return finish(process, timeout_s, f"{entry} {' '.join(args)}")


def finish(process: subprocess.Popen[str], timeout_s: float = PROGRAM_TIMEOUT_S, what: str = "the program") -> Finished:
    """Wait for a started program; if it hangs, fail with where every process of it was, not just a timeout.

    Each process of the program's tree (its own, and its children's: pool workers, say) is listed
    with its state and signal masks, then sent SIGABRT, which makes faulthandler (on through
    ``clean_env``, inherited by the children) print each of its threads' tracebacks to stderr.
    """
    try:
        stdout, stderr = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        tree = _process_tree(process.pid)
        for pid in reversed(list(tree)):  # children first, one at a time: their dumps share stderr
            try:
                os.kill(pid, signal.SIGABRT)
            except OSError:
                continue
            _wait_gone(pid, 2.0)
        try:
            stdout, stderr = process.communicate(timeout=10)
        finally:
            process.kill()
        raise AssertionError(
            f"{what} did not end within {timeout_s} s\nprocesses:\n{_describe(tree)}\n"
            f"stdout:\n{stdout}\nstderr:\n{stderr}"
        ) from None
    return Finished(stdout, stderr, process.returncode)


_STATUS_FIELDS: Final = ("State", "PPid", "SigBlk", "SigIgn", "SigCgt", "SigPnd", "ShdPnd")


def _process_tree(pid: int) -> Dict[int, str]:
    """The process and its descendants, each with its command line and the status lines that say why
    it may not end (state, pending, blocked and caught signals), read before anything is sent to it."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return {}
    tree: Dict[int, str] = {}
    for member in processes:
        try:
            cmdline = " ".join(member.cmdline())
            with open(f"/proc/{member.pid}/status") as status:
                fields = [line.strip() for line in status if line.split(":")[0] in _STATUS_FIELDS]
            with open(f"/proc/{member.pid}/wchan") as wchan:
                fields.append(f"wchan: {wchan.read().strip()}")
        except (OSError, psutil.Error):
            continue
        tree[member.pid] = f"{cmdline}\n    " + "\n    ".join(fields)
    return tree


def _wait_gone(pid: int, timeout_s: float) -> None:
    import psutil

    try:
        psutil.Process(pid).wait(timeout_s)
    except (psutil.Error, psutil.TimeoutExpired):
        pass


def _describe(tree: Mapping[int, str]) -> str:
    return "\n".join(f"  {pid}: {text}" for pid, text in tree.items()) or "  (none left)"


def profile_files(directory: Path) -> List[Path]:
    return sorted(
        path for path in directory.iterdir() if path.name.startswith("profile-") and path.suffix in (".json", ".ion")
    )


def read_profiles(directory: Path) -> List[Dict[str, Any]]:
    """Every profile document local mode wrote to ``directory``."""
    documents = []
    for path in profile_files(directory):
        content_type = ION_CONTENT_TYPE if path.suffix == ".ion" else JSON_CONTENT_TYPE
        documents.append(decode(path.read_bytes(), content_type))
    return documents


def function_count(document: Mapping[str, Any], function: str) -> int:
    """Samples in ``function`` and below it (outermost occurrences only), by its key's last part."""
    total = 0
    for path, node in walk_callgraph(document["callgraph"]):
        if path[-1].split(":")[-1] == function and not any(p.split(":")[-1] == function for p in path[:-1]):
            total += _subtree_count(node)
    return total


def _subtree_count(node: Mapping[str, Any]) -> int:
    total = 0
    pending = [node]
    while pending:
        current = pending.pop()
        total += int((current.get("counts") or {}).get("WALL_TIME", 0))
        pending.extend((current.get("children") or {}).values())
    return total


def has_function(documents: Sequence[Mapping[str, Any]], function: str) -> bool:
    return any(function_count(document, function) > 0 for document in documents)
