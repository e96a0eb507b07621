"""``codeguru-agent run`` as the README describes it, in real subprocesses: the credential profile and
region options, --version, the command's own help, programs given as a directory, a zip file,
``-mpkg`` or after ``--``, and signals: the program's own SIGTERM handler, and Ctrl-C's 130."""

from __future__ import annotations

import json
import signal
import subprocess
import zipfile
from pathlib import Path

import boto3
import pytest

from codeguru_agent import __version__
from codeguru_agent.collector.server import CollectorOptions, CollectorServer
from support.programs import (
    CRUNCH,
    ENTRY_POINTS,
    clean_env,
    command,
    finish,
    has_function,
    read_profiles,
    run,
    write_program,
)

ACCESS_KEY, SECRET_KEY = "AKIDFROMPROFILE", "profile-secret"


def test_a_credential_profile_and_a_region_on_the_command_line(tmp_path: Path) -> None:
    """The collector accepts only the profile's keys; a group it creates takes its ARN's region
    from the request's signature, so the ARN tells which region the agent signed for."""
    credentials = tmp_path / "credentials"
    credentials.write_text(f"[app]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n")
    program = write_program(tmp_path, CRUNCH + "crunch(0.2)\nprint('done')\n")
    options = CollectorOptions(
        port=0, db_path=str(tmp_path / "db"), auto_create=True, access_key=ACCESS_KEY, secret_key=SECRET_KEY
    )
    with CollectorServer(options) as server:
        env = clean_env(tmp_path, AWS_SHARED_CREDENTIALS_FILE=credentials, AWS_ENDPOINT_URL_CODEGURUPROFILER=server.url)

        done = run(ENTRY_POINTS[0], ["-p", "orders", "-c", "app", "-r", "eu-west-3", str(program)], env)

        assert (done.returncode, done.stdout, done.warnings) == (0, "done\n", []), done.stderr
        signed = boto3.client(
            "codeguruprofiler",
            endpoint_url=server.url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )
        group = signed.describe_profiling_group(profilingGroupName="orders")["profilingGroup"]
        assert group["arn"].startswith("arn:aws:codeguru-profiler:eu-west-3:")
        assert group["profilingStatus"]["latestAgentProfileReportedAt"]


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_version_prints_the_version(entry: str, tmp_path: Path) -> None:
    done = run(entry, ["--version"], clean_env(tmp_path))

    assert (done.returncode, done.stdout) == (0, f"codeguru-agent {__version__}\n"), done.stderr


@pytest.mark.parametrize(
    "args, status, stream, text",
    [
        ([], 2, "stdout", "usage: codeguru-agent COMMAND"),
        (["--help"], 0, "stdout", "'codeguru-agent COMMAND --help' describes each command's options."),
        (["profile"], 2, "stderr", "codeguru-agent: unknown command 'profile'"),
    ],
)
def test_the_commands_own_help_and_an_unknown_command(
    args: list, status: int, stream: str, text: str, tmp_path: Path
) -> None:
    script = command(ENTRY_POINTS[1], [])[0]
    done = subprocess.run([script, *args], capture_output=True, text=True, env=clean_env(tmp_path), timeout=60)

    assert done.returncode == status
    assert text in getattr(done, stream)
    assert all(name in done.stdout + done.stderr for name in ("run", "collector", "flamegraph"))


MAIN = (
    CRUNCH
    + """
import json, sys
crunch(0.2)
print(json.dumps({"name": __name__, "argv": sys.argv[1:]}))
"""
)


def packaged(kind: str, tmp_path: Path) -> str:
    if kind == "directory":
        write_program(tmp_path / "app", MAIN, name="__main__.py")
        return str(tmp_path / "app")
    archive = tmp_path / "app.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("__main__.py", MAIN)
    return str(archive)


@pytest.mark.parametrize("kind", ["directory", "zip"])
def test_a_directory_or_a_zip_file_with_a_main_runs_as_the_program(kind: str, tmp_path: Path) -> None:
    out = tmp_path / "out"

    done = run(ENTRY_POINTS[0], ["--local", str(out), packaged(kind, tmp_path), "--flag"], clean_env(tmp_path))

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout_lines[0]) == {"name": "__main__", "argv": ["--flag"]}
    assert has_function(read_profiles(out), "crunch")


def test_dash_m_joined_to_the_package_runs_its_main(tmp_path: Path) -> None:
    write_program(tmp_path / "pkg", "", name="__init__.py")
    write_program(tmp_path / "pkg", MAIN, name="__main__.py")
    out = tmp_path / "out"

    done = run(ENTRY_POINTS[0], ["--local", str(out), "-mpkg", "-p", "3"], clean_env(tmp_path), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout_lines[0]) == {"name": "__main__", "argv": ["-p", "3"]}
    assert has_function(read_profiles(out), "crunch")


def test_after_a_double_dash_a_script_name_may_start_with_a_dash(tmp_path: Path) -> None:
    program = write_program(tmp_path, MAIN, name="-odd.py")
    out = tmp_path / "out"

    done = run(ENTRY_POINTS[0], ["--local", str(out), "--", program.name, "x"], clean_env(tmp_path), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout_lines[0]) == {"name": "__main__", "argv": ["x"]}
    assert has_function(read_profiles(out), "crunch")


OWN_SIGTERM_HANDLER = """
import signal, sys, time

def stop(signum, frame):
    print("stopped by my handler", flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""

IGNORING_SIGTERM = """
import sys
print("ready", flush=True)
sys.stdin.readline()  # the test sends SIGTERM, then ends this line
print("still here", flush=True)
"""

WAIT_FOR_CTRL_C = """
import time
print("ready", flush=True)
while True:
    time.sleep(0.1)
"""


def run_until_ready_then_signal(tmp_path: Path, body: str, signum: int) -> tuple:
    program = write_program(tmp_path, body)
    out = tmp_path / "out"
    process = subprocess.Popen(
        command(ENTRY_POINTS[0], ["--local", str(out), str(program)]),
        env=clean_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signum)
        return finish(process, timeout_s=30), out
    finally:
        process.kill()


def test_a_programs_own_sigterm_handler_is_kept(tmp_path: Path) -> None:
    finished, out = run_until_ready_then_signal(tmp_path, OWN_SIGTERM_HANDLER, signal.SIGTERM)

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout_lines[0] == "stopped by my handler"
    assert Path(finished.stdout_lines[-1]) == out.resolve() / "flamegraph.html", "the agent still stopped at exit"


def test_a_sigterm_ignored_by_the_parent_stays_ignored(tmp_path: Path) -> None:
    """``nohup``-like: the program inherits SIGTERM ignored, and the agent must not catch it instead."""
    program = write_program(tmp_path, IGNORING_SIGTERM)
    process = subprocess.Popen(
        command(ENTRY_POINTS[0], ["--local", str(tmp_path / "out"), str(program)]),
        env=clean_env(tmp_path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN),
    )
    try:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        process.stdin.write("\n")
        process.stdin.flush()
        finished = finish(process, timeout_s=30)
    finally:
        process.kill()

    assert finished.returncode == 0, finished.stderr
    assert finished.stdout_lines[0] == "still here"


def test_ctrl_c_exits_130(tmp_path: Path) -> None:
    finished, out = run_until_ready_then_signal(tmp_path, WAIT_FOR_CTRL_C, signal.SIGINT)

    assert finished.returncode == 130, finished.stderr
    assert "KeyboardInterrupt" in finished.stderr and "codeguru_agent" not in finished.stderr
    assert Path(finished.stdout_lines[-1]) == out.resolve() / "flamegraph.html"
