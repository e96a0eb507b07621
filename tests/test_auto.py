"""``import codeguru_agent.auto``: profiling configured by the environment alone, harmless without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support.programs import (
    CRUNCH,
    PROGRAM_TIMEOUT_S,
    clean_env,
    has_function,
    read_profiles,
    write_program,
)

AUTO_PROGRAM = (
    """
import logging, sys
logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
import codeguru_agent.auto
"""
    + CRUNCH
    + """
def nightly_report():
    crunch(0.5)

nightly_report()
print("running" if codeguru_agent.auto.profiler.is_running() else "not profiled")
sys.exit(5)
"""
)


def run_program(program: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(program)], check=False, env=env, capture_output=True, text=True, timeout=PROGRAM_TIMEOUT_S
    )


def test_the_environment_alone_starts_the_profiler(tmp_path: Path) -> None:
    program = write_program(tmp_path, AUTO_PROGRAM)
    out = tmp_path / "out"

    done = run_program(
        program, clean_env(tmp_path, AWS_CODEGURU_PROFILER_LOCAL_DIR=out, AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS=5)
    )

    assert done.returncode == 5
    assert done.stdout == "running\n"
    assert "WARNING" not in done.stderr, done.stderr
    assert has_function(read_profiles(out), "nightly_report")
    assert "nightly_report" in (out / "flamegraph.html").read_text(encoding="utf-8")


def test_without_configuration_it_warns_once_and_the_program_carries_on(tmp_path: Path) -> None:
    program = write_program(tmp_path, AUTO_PROGRAM)

    done = run_program(program, clean_env(tmp_path))

    assert done.returncode == 5
    assert done.stdout == "not profiled\n"
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "profiling group" in warnings[0], done.stderr
    assert "Traceback" not in done.stderr


def test_disabled_by_the_environment_it_does_nothing(tmp_path: Path) -> None:
    program = write_program(tmp_path, AUTO_PROGRAM)
    out = tmp_path / "out"

    done = run_program(
        program, clean_env(tmp_path, AWS_CODEGURU_PROFILER_ENABLED="false", AWS_CODEGURU_PROFILER_LOCAL_DIR=out)
    )

    assert done.returncode == 5
    assert done.stdout == "not profiled\n"
    assert done.stderr == ""
    assert not out.exists()
