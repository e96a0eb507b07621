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

import botocore.exceptions
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


def test_the_configure_agent_answer_comes_from_the_command_line(tmp_path):
    answer_options = ("--should-profile", "false", "--period", "60", "--agent-parameter", "MaxStackDepth=7")
    with spawn_collector(str(tmp_path / "db"), *answer_options) as collector:
        collector.create_group("orders")

        answer = collector.client().configure_agent(profilingGroupName="orders", fleetInstanceId="host-1")

    assert answer["configuration"] == {
        "shouldProfile": False,
        "periodInSeconds": 60,
        "agentParameters": {"MaxStackDepth": "7"},
    }


def test_the_fault_options_fail_delay_and_drop_requests_end_to_end(tmp_path):
    faults = (
        "--fault",
        "PostAgentProfile:500:InternalServerException:2",
        "--fault-delay-ms",
        "ConfigureAgent:200",
        "--fault-drop",
        "ListProfilingGroups",
    )
    with spawn_collector(str(tmp_path / "db"), *faults) as collector:
        collector.create_group("orders")
        client = collector.client(max_attempts=1)

        def post(token):
            return client.post_agent_profile(
                profilingGroupName="orders",
                agentProfile=json.dumps(profile_document()),
                contentType="application/json",
                profileToken=token,
            )

        for token in ("t-1", "t-2"):
            with pytest.raises(client.exceptions.InternalServerException):
                post(token)
        assert post("t-3")["ResponseMetadata"]["HTTPStatusCode"] == 204
        assert client.configure_agent(profilingGroupName="orders")["configuration"]["shouldProfile"] is True
        with pytest.raises(botocore.exceptions.ConnectionClosedError):
            client.list_profiling_groups()
        assert client.list_profiling_groups()["profilingGroupNames"] == ["orders"]

        journal = collector.requests("PostAgentProfile") + collector.requests("ConfigureAgent")
        assert [(entry["status"], entry["fault"]) for entry in journal] == [
            (500, True),
            (500, True),
            (204, False),
            (200, True),
        ]
        assert [entry["profileToken"] for entry in collector.profiles("orders")] == ["t-3"]


def test_auto_create_makes_a_group_on_its_first_profile(tmp_path):
    with spawn_collector(str(tmp_path / "db"), "--auto-create") as collector:
        client = collector.client()
        client.post_agent_profile(
            profilingGroupName="new-group", agentProfile=json.dumps(profile_document()), contentType="application/json"
        )

        assert client.list_profiling_groups()["profilingGroupNames"] == ["new-group"]
        assert len(collector.profiles("new-group")) == 1


def test_an_unreadable_database_exits_1(tmp_path, capsys):
    database = tmp_path / "collector.db"
    database.write_bytes(b"this is not a SQLite database, not even its header" * 100)

    assert cli.main(["--db", str(database), "--port", "0"]) == 1

    assert str(database) in capsys.readouterr().err


def test_a_request_in_flight_is_finished_on_sigterm(collector_process):
    """The request's headers are in (the collector said ``100 Continue``) when SIGTERM arrives; its
    body follows, and is answered and stored before the collector exits 0."""
    collector_process.create_group("orders")
    body = json.dumps(profile_document()).encode()
    host, port = collector_process.url.rsplit("/", 1)[-1].split(":")
    with socket.create_connection((host, int(port)), timeout=20) as connection:
        connection.sendall(
            b"POST /profilingGroups/orders/agentProfile?profileToken=in-flight HTTP/1.1\r\n"
            + f"Host: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n".encode()
            + b"Expect: 100-continue\r\n\r\n"
        )
        answer = connection.makefile("rb")
        assert answer.readline().startswith(b"HTTP/1.1 100")
        assert answer.readline() == b"\r\n"

        collector_process.process.send_signal(signal.SIGTERM)
        connection.sendall(body)
        status = answer.readline()
        answer.close()

    assert status.startswith(b"HTTP/1.1 204"), status
    assert collector_process.process.wait(timeout=20) == 0
    with spawn_collector(collector_process.db_path) as restarted:
        assert [entry["profileToken"] for entry in restarted.profiles("orders")] == ["in-flight"]
