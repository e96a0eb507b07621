"""The command line: its first line, a clean stop on SIGTERM or SIGINT, durability across kill -9."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from codeguru_agent.cli import collector as cli
from support.collector_client import spawn_collector
from support.documents import profile_document


def test_the_first_line_is_the_url_and_it_serves(collector_process):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", collector_process.url)

    group = collector_process.create_group("orders")

    assert group["name"] == "orders"


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_ends_it_cleanly(collector_process, stop_signal):
    collector_process.create_group("orders")

    collector_process.process.send_signal(stop_signal)

    assert collector_process.process.wait(timeout=20) == 0


def test_an_acknowledged_profile_survives_kill_9(collector_process):
    collector_process.create_group("orders")
    document = profile_document()
    answer = collector_process.client().post_agent_profile(
        profilingGroupName="orders",
        agentProfile=json.dumps(document),
        contentType="application/json",
        profileToken="durable",
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 204

    collector_process.process.kill()
    collector_process.process.wait(timeout=20)

    with spawn_collector(collector_process.db_path) as restarted:
        [stored] = restarted.profiles("orders")
        assert (stored["profileToken"], stored["document"]) == ("durable", document)


def help_of(*command: str) -> str:
    environment = {**os.environ, "COLUMNS": "100"}
    return subprocess.run(
        [*command, "--help"], capture_output=True, text=True, timeout=60, check=True, env=environment
    ).stdout


def test_python_dash_m_and_the_agent_command_take_the_same_options():
    console_script = str(Path(sys.executable).with_name("codeguru-agent"))

    by_module = help_of(sys.executable, "-m", "codeguru_agent.collector")
    by_command = help_of(console_script, "collector")

    assert by_module == by_command
    assert "--auto-create" in by_module and "--fault-drop" in by_module and "--agent-parameter" in by_module


@pytest.mark.parametrize(
    "arguments, problem",
    [
        (["--fault", "PostAgentProfile"], "expected OPERATION:STATUS"),
        (["--agent-parameter", "SamplingIntervalInMilliseconds"], "expected NAME=VALUE"),
        (["--agent-parameter", "Colour=blue"], "unknown agent parameter 'Colour'"),
        (["--access-key", "AKID"], "give both --access-key and --secret-key"),
        (["--max-body-mb", "0"], "--max-body-mb must be positive"),
    ],
)
def test_bad_options_exit_2_with_a_message(capsys, arguments, problem):
    assert cli.main(["--db", ":memory:", *arguments]) == 2

    assert problem in capsys.readouterr().err


def test_a_port_in_use_exits_1(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        assert cli.main(["--db", ":memory:", "--port", str(port)]) == 1

    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
