"""Interpreters with a GIL of their own never crash the host.

From Python 3.12, ``sys._current_frames()`` creates frame objects for the threads of every
interpreter with the caller's allocator; an interpreter with its own allocator frees them with
that one, and the process aborts. Before the agent stopped reading frames while such interpreters
run, a program that made them aborted under the agent every time ("free(): invalid pointer"), on
3.12 and 3.13; without the agent it ended normally.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from codeguru_agent.host import interpreters
from support.programs import CRUNCH, clean_env, read_profiles, run, write_program

SUBINTERPRETERS = """
import sys
import threading
import threading

try:
    import _interpreters as interpreters  # 3.13+
except ImportError:
    import _xxsubinterpreters as interpreters  # 3.9 to 3.12

CODE = "total = 0\\nfor i in range(200_000):\\n    total += i\\n"


def make_and_run_interpreters():
    for _ in range(15):
        interpreter = interpreters.create()
        interpreters.run_string(interpreter, CODE)
        interpreters.destroy(interpreter)


crunch(0.5)
threads = [threading.Thread(target=make_and_run_interpreters) for _ in range(3)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
crunch(0.5)
print("interpreters left:", len(interpreters.list_all()))
"""


def test_a_program_that_runs_isolated_interpreters_ends_normally_and_says_what_was_skipped(tmp_path: Path) -> None:
    program = write_program(tmp_path, CRUNCH + SUBINTERPRETERS)
    out = tmp_path / "out"
    env = clean_env(
        tmp_path,
        AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS=5,
        AWS_CODEGURU_PROFILER_REPORTING_INTERVAL_MS=60_000,
    )
    finished = run("python -m codeguru_agent", ["--local", str(out), str(program)], env)

    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "interpreters left: 1" in finished.stdout
    documents = read_profiles(out)
    assert documents, "the samples taken while the main interpreter was alone are delivered"
    skipped = sum(doc["debugInfo"]["genericMetrics"].get("ticksSkippedForInterpreters", 0) for doc in documents)
    if sys.version_info >= (3, 12):
        assert skipped > 0, "ticks while other interpreters ran are counted as skipped"
    else:
        assert skipped == 0, "interpreters sharing the main GIL are sampled as before"


@pytest.mark.skipif(sys.version_info < (3, 12), reason="interpreters have a GIL of their own from 3.12")
def test_other_interpreters_are_seen_while_they_exist_and_not_after() -> None:
    try:
        import _interpreters as lister  # type: ignore[import-not-found]
    except ImportError:
        import _xxsubinterpreters as lister  # type: ignore[import-not-found,no-redef]

    assert not interpreters.others_exist()
    assert interpreters.current_frames() is not None
    interpreter = lister.create()
    try:
        assert interpreters.others_exist()
        assert interpreters.current_frames() is None
    finally:
        lister.destroy(interpreter)
    assert not interpreters.others_exist()
    frames = interpreters.current_frames()
    assert frames is not None and threading.get_ident() in frames


def test_without_any_module_that_makes_interpreters_the_check_reads_only_sys_modules(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("_interpreters", "_xxsubinterpreters", "_testinternalcapi", "_testcapi"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    imported = set(sys.modules)
    assert not interpreters.others_exist()
    assert set(sys.modules) == imported, "nothing is imported to answer"
