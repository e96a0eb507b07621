"""Injected faults: errors botocore sees by code, delays, dropped connections, and the journal."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from codeguru_agent.collector.faults import Fault, FaultError, parse_delay_spec, parse_drop_spec, parse_status_spec
from codeguru_agent.collector.server import CollectorOptions, CollectorServer
from support.collector_client import CollectorHandle
from support.documents import profile_document

BODY = json.dumps(profile_document())


def post(client, token="t-1"):
    return client.post_agent_profile(
        profilingGroupName="orders", agentProfile=BODY, contentType="application/json", profileToken=token
    )


@pytest.fixture
def orders(collector):
    collector.create_group("orders")
    return collector


@pytest.mark.parametrize(
    "status, code", [(500, "InternalServerException"), (429, "ThrottlingException"), (503, "ServiceUnavailable")]
)
def test_the_next_requests_fail_with_the_status_and_code(orders, status, code):
    orders.fail_next("PostAgentProfile", count=2, status=status, code=code, message="try later")
    client = orders.client(max_attempts=1)

    failures = []
    for _ in range(2):
        with pytest.raises(ClientError) as raised:
            post(client)
        failures.append(raised.value.response)
    post(client)

    assert [(f["ResponseMetadata"]["HTTPStatusCode"], f["Error"]["Code"], f["Error"]["Message"]) for f in failures] == [
        (status, code, "try later")
    ] * 2
    assert len(orders.profiles("orders")) == 1
    journal = orders.requests("PostAgentProfile")
    assert [(entry["status"], entry["fault"]) for entry in journal] == [(status, True), (status, True), (204, False)]
    assert journal[0]["query"] == {"profileToken": "t-1"}
    assert journal[0]["headers"] == {"content-type": "application/json"}
    assert "body" not in journal[0]


def test_botocore_retries_a_500_with_the_same_token_and_it_is_stored_once(orders):
    orders.fail_next("PostAgentProfile", count=1)

    answer = orders.client(max_attempts=3).post_agent_profile(
        profilingGroupName="orders", agentProfile=BODY, contentType="application/json"
    )

    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    tokens = [entry["query"]["profileToken"] for entry in orders.requests("PostAgentProfile")]
    assert len(tokens) == 2 and tokens[0] == tokens[1]
    assert [profile["profileToken"] for profile in orders.profiles("orders")] == tokens[:1]


def test_a_delayed_request_is_still_processed_after_the_client_gave_up(orders):
    orders.fail_next("PostAgentProfile", status=None, delay_ms=1_000)
    client = orders.client(max_attempts=1, read_timeout=0.1)

    with pytest.raises(ReadTimeoutError):
        post(client)

    [stored] = orders.wait_for_profiles("orders", 1)
    assert stored["profileToken"] == "t-1"
    [entry] = orders.requests("PostAgentProfile")
    assert (entry["status"], entry["fault"]) == (204, True)


def test_a_dropped_connection_is_a_connection_error(orders):
    orders.fail_next("PostAgentProfile", drop=True)
    client = orders.client(max_attempts=1)

    with pytest.raises(ConnectionClosedError):
        post(client)
    post(client)

    assert len(orders.profiles("orders")) == 1
    assert [(entry["status"], entry["fault"]) for entry in orders.requests("PostAgentProfile")] == [
        (None, True),
        (204, False),
    ]


def test_faults_are_per_operation_and_can_be_cleared(orders):
    orders.fail_next("ConfigureAgent", count=5)
    post(orders.client(max_attempts=1))
    orders.clear_faults()

    orders.client(max_attempts=1).configure_agent(profilingGroupName="orders")

    assert [entry["fault"] for entry in orders.requests("ConfigureAgent")] == [False]


def test_start_options_inject_faults_too(tmp_path):
    fault = parse_status_spec("CreateProfilingGroup:500:InternalServerException:1")
    with CollectorServer(CollectorOptions(db_path=str(tmp_path / "db"), faults=[fault])) as server:
        client = CollectorHandle(server.url).client(max_attempts=1)

        with pytest.raises(client.exceptions.InternalServerException):
            client.create_profiling_group(profilingGroupName="orders")
        client.create_profiling_group(profilingGroupName="orders")


def test_an_unusable_fault_is_refused(orders):
    with pytest.raises(AssertionError, match=r"400.*unknown operation 'PostProfile'"):
        orders.fail_next("PostProfile")
    with pytest.raises(AssertionError, match=r"400.*a fault needs a status, a delayMs or drop"):
        orders.fail_next("PostAgentProfile", status=None)


def test_the_hooks_are_not_served_without_test_hooks(tmp_path):
    with CollectorServer(CollectorOptions(db_path=str(tmp_path / "db"))) as server:
        request = urllib.request.Request(server.url + "/_test/faults", data=b"{}", method="POST")

        with pytest.raises(urllib.error.HTTPError) as raised:
            urllib.request.urlopen(request, timeout=10)

        assert raised.value.code == 404
        assert raised.value.headers["x-amzn-ErrorType"] == "UnknownOperationException"


def test_the_command_line_fault_forms():
    assert parse_status_spec("PostAgentProfile:500:InternalServerException:2") == Fault(
        "PostAgentProfile", count=2, status=500, code="InternalServerException"
    )
    assert parse_status_spec("PostAgentProfile:429").error_code == "ThrottlingException"
    assert parse_delay_spec("ConfigureAgent:250:3") == Fault("ConfigureAgent", count=3, delay_ms=250)
    assert parse_drop_spec("PostAgentProfile") == Fault("PostAgentProfile", drop=True)
    for bad in ("PostAgentProfile", "PostAgentProfile:five", "Nope:500", "PostAgentProfile:200"):
        with pytest.raises(FaultError):
            parse_status_spec(bad)
