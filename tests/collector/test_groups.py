"""CreateProfilingGroup, DescribeProfilingGroup, ListProfilingGroups, UpdateProfilingGroup and
DeleteProfilingGroup through a stock boto3 client."""

from __future__ import annotations

import json

import pytest

from support.documents import START_MS, profile_document


def test_create_answers_201_with_the_group_description(collector):
    response = collector.client().create_profiling_group(
        profilingGroupName="orders",
        computePlatform="AWSLambda",
        agentOrchestrationConfig={"profilingEnabled": False},
        tags={"team": "payments"},
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 201
    group = response["profilingGroup"]
    assert group["name"] == "orders"
    assert group["arn"] == "arn:aws:codeguru-profiler:us-east-1:000000000000:profilingGroup/orders"
    assert group["computePlatform"] == "AWSLambda"
    assert group["agentOrchestrationConfig"] == {"profilingEnabled": False}
    assert group["tags"] == {"team": "payments"}
    assert group["createdAt"] == group["updatedAt"]


def test_create_is_idempotent_on_the_client_token(collector):
    client = collector.client()
    first = client.create_profiling_group(profilingGroupName="orders", clientToken="token-1")
    again = client.create_profiling_group(profilingGroupName="orders", clientToken="token-1")

    assert again["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert again["profilingGroup"] == first["profilingGroup"]


def test_create_with_another_token_is_a_conflict(collector):
    client = collector.client()
    client.create_profiling_group(profilingGroupName="orders", clientToken="token-1")

    with pytest.raises(client.exceptions.ConflictException) as raised:
        client.create_profiling_group(profilingGroupName="orders", clientToken="token-2")

    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert "'orders' already exists" in raised.value.response["Error"]["Message"]


def test_create_rejects_an_invalid_name(collector):
    client = collector.client()
    with pytest.raises(client.exceptions.ValidationException) as raised:
        client.create_profiling_group(profilingGroupName="no spaces allowed")

    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert "profilingGroupName 'no spaces allowed' is invalid" in raised.value.response["Error"]["Message"]


def test_describe_returns_what_create_returned(collector):
    created = collector.create_group("orders")

    described = collector.client().describe_profiling_group(profilingGroupName="orders")

    assert described["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert described["profilingGroup"] == created


def test_describe_shows_when_the_latest_profile_was_reported(collector):
    collector.create_group("orders")
    collector.client().post_agent_profile(
        profilingGroupName="orders", agentProfile=json.dumps(profile_document()), contentType="application/json"
    )

    status = collector.client().describe_profiling_group(profilingGroupName="orders")["profilingGroup"][
        "profilingStatus"
    ]

    assert "latestAgentProfileReportedAt" in status
    assert status["latestAggregatedProfile"]["period"] == "PT5M"
    assert status["latestAggregatedProfile"]["start"].timestamp() * 1000 == START_MS


def test_describe_an_unknown_group_is_not_found(collector):
    client = collector.client()
    with pytest.raises(client.exceptions.ResourceNotFoundException) as raised:
        client.describe_profiling_group(profilingGroupName="missing")

    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    assert "'missing' does not exist" in raised.value.response["Error"]["Message"]


def test_list_pages_through_names_in_creation_order(collector):
    for name in ("charlie", "alpha", "bravo"):
        collector.create_group(name)
    client = collector.client()

    first = client.list_profiling_groups(maxResults=2)
    second = client.list_profiling_groups(maxResults=2, nextToken=first["nextToken"])

    assert first["profilingGroupNames"] == ["charlie", "alpha"]
    assert "profilingGroups" not in first
    assert second["profilingGroupNames"] == ["bravo"]
    assert "nextToken" not in second


def test_list_with_descriptions(collector):
    created = [collector.create_group(name) for name in ("alpha", "bravo")]

    listed = collector.client().list_profiling_groups(includeDescription=True)

    assert listed["profilingGroups"] == created
    assert listed["profilingGroupNames"] == []


def test_list_rejects_a_token_it_did_not_issue(collector):
    client = collector.client()
    with pytest.raises(client.exceptions.ValidationException) as raised:
        client.list_profiling_groups(nextToken="not-mine")

    assert "nextToken 'not-mine'" in raised.value.response["Error"]["Message"]


def test_update_changes_the_orchestration_config(collector):
    collector.create_group("orders")

    updated = collector.client().update_profiling_group(
        profilingGroupName="orders", agentOrchestrationConfig={"profilingEnabled": False}
    )

    assert updated["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert updated["profilingGroup"]["agentOrchestrationConfig"] == {"profilingEnabled": False}
    described = collector.client().describe_profiling_group(profilingGroupName="orders")["profilingGroup"]
    assert described["agentOrchestrationConfig"] == {"profilingEnabled": False}


def test_update_an_unknown_group_is_not_found(collector):
    client = collector.client()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.update_profiling_group(profilingGroupName="missing", agentOrchestrationConfig={"profilingEnabled": True})


def test_delete_answers_204_and_removes_the_group_and_its_profiles(collector):
    client = collector.client()
    collector.create_group("orders")
    client.post_agent_profile(
        profilingGroupName="orders", agentProfile=json.dumps(profile_document()), contentType="application/json"
    )

    deleted = client.delete_profiling_group(profilingGroupName="orders")

    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.describe_profiling_group(profilingGroupName="orders")
    collector.create_group("orders")
    assert collector.profiles("orders") == []


def test_delete_an_unknown_group_is_not_found(collector):
    client = collector.client()
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.delete_profiling_group(profilingGroupName="missing")
