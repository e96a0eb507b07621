"""ConfigureAgent: the group's AgentConfiguration, steered by start options and the test hooks,
and every call recorded for tests."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError

from codeguru_agent.collector.server import CollectorOptions, CollectorServer
from support.collector_client import CollectorHandle


def configuration(collector, group="orders", **kwargs):
    answer = collector.client().configure_agent(profilingGroupName=group, **kwargs)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    return answer["configuration"]


def test_the_default_answer_follows_the_group(collector):
    collector.create_group("orders")
    collector.create_group("paused", agentOrchestrationConfig={"profilingEnabled": False})

    assert configuration(collector) == {"shouldProfile": True, "periodInSeconds": 300, "agentParameters": {}}
    assert configuration(collector, "paused")["shouldProfile"] is False


def test_start_options_override_the_answer(tmp_path):
    options = CollectorOptions(
        db_path=str(tmp_path / "db"),
        should_profile=False,
        period_s=60,
        agent_parameters={"SamplingIntervalInMilliseconds": "100"},
    )
    with CollectorServer(options) as server:
        collector = CollectorHandle(server.url)
        collector.create_group("orders")

        assert configuration(collector) == {
            "shouldProfile": False,
            "periodInSeconds": 60,
            "agentParameters": {"SamplingIntervalInMilliseconds": "100"},
        }


def test_overrides_change_at_run_time_for_all_groups_or_one(collector):
    collector.create_group("orders")
    collector.create_group("billing")

    collector.set_agent_configuration(period_s=10, SamplingIntervalInMilliseconds=50, MaxStackDepth="64")
    collector.set_agent_configuration(group="billing", should_profile=False, MaxStackDepth=None)

    assert configuration(collector, "orders") == {
        "shouldProfile": True,
        "periodInSeconds": 10,
        "agentParameters": {"SamplingIntervalInMilliseconds": "50", "MaxStackDepth": "64"},
    }
    assert configuration(collector, "billing")["shouldProfile"] is False
    collector.set_agent_configuration(MaxStackDepth=None)
    assert configuration(collector, "orders")["agentParameters"] == {"SamplingIntervalInMilliseconds": "50"}


def test_an_unknown_agent_parameter_override_is_refused(collector):
    with pytest.raises(AssertionError, match=r"400.*unknown agent parameter 'SamplingRate'"):
        collector.set_agent_configuration(SamplingRate=5)


def test_every_call_is_recorded_with_its_body(collector):
    collector.create_group("orders")

    configuration(collector, fleetInstanceId="host-1", metadata={"AgentId": "agent-1"})
    configuration(collector, fleetInstanceId="host-2")

    calls = collector.requests("ConfigureAgent")
    assert [call["body"] for call in calls] == [
        {"fleetInstanceId": "host-1", "metadata": {"AgentId": "agent-1"}},
        {"fleetInstanceId": "host-2"},
    ]
    assert all(call["status"] == 200 and call["profilingGroupName"] == "orders" for call in calls)
    described = collector.client().describe_profiling_group(profilingGroupName="orders")["profilingGroup"]
    assert "latestAgentOrchestratedAt" in described["profilingStatus"]


def test_an_unknown_metadata_field_is_a_validation_error(collector):
    collector.create_group("orders")
    client = collector.client(max_attempts=1)

    with pytest.raises(ClientError) as raised:
        client.configure_agent(profilingGroupName="orders", metadata={"Colour": "blue"})

    assert raised.value.response["Error"]["Code"] == "ValidationException"
    assert "unknown metadata field 'Colour'" in raised.value.response["Error"]["Message"]


def test_an_unknown_group_is_not_found(collector):
    client = collector.client(max_attempts=1)

    with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
        client.configure_agent(profilingGroupName="ghost")

    assert "--auto-create" in raised.value.response["Error"]["Message"]
    assert collector.requests("ConfigureAgent")[0]["status"] == 404


def test_auto_create_makes_a_lambda_group_from_the_metadata(tmp_path):
    with CollectorServer(CollectorOptions(db_path=str(tmp_path / "db"), auto_create=True)) as server:
        collector = CollectorHandle(server.url)

        configuration(collector, "fn", metadata={"ComputePlatform": "AWSLambda"})

        group = collector.client().describe_profiling_group(profilingGroupName="fn")["profilingGroup"]
        assert group["computePlatform"] == "AWSLambda"
