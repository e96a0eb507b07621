"""ECS/Fargate identity from a local task metadata endpoint v4."""

from __future__ import annotations

import pytest

from codeguru_agent.fleet import StaticProvider, detect, ec2, ecs
from codeguru_agent.fleet._http import MetadataError

TASK_ARN = "arn:aws:ecs:us-west-2:111122223333:task/default/9781c248-0edd-4cdb-9a93-f63cb662a5d3"


def test_identity_is_the_task_arn_with_its_limits(ecs_metadata):
    identity = ecs.lookup({ecs.URI_ENV: ecs_metadata.url})

    assert identity is not None
    assert identity.fleet_instance_id == TASK_ARN
    assert identity.fleet_info == {
        "computeType": "aws_fargate_task",
        "taskArn": TASK_ARN,
        "cpuLimit": 0.25,
        "memoryLimitInMB": 512,
    }
    assert [(r.method, r.path) for r in ecs_metadata.requests] == [("GET", ecs_metadata.fake.prefix + "/task")]


@pytest.mark.parametrize(
    "limits, expected",
    [
        (None, {}),
        ({"Memory": 2048}, {"memoryLimitInMB": 2048}),
        ({"CPU": 2, "Memory": None}, {"cpuLimit": 2}),
        ({"CPU": True, "Memory": "512"}, {}),
    ],
)
def test_absent_or_odd_limits_are_left_out(ecs_metadata, limits, expected):
    ecs_metadata.fake.task.pop("Limits")
    if limits is not None:
        ecs_metadata.fake.task["Limits"] = limits

    identity = ecs.lookup({ecs.URI_ENV: ecs_metadata.url})

    assert identity is not None
    assert identity.fleet_info == {"computeType": "aws_fargate_task", "taskArn": TASK_ARN, **expected}


def test_the_variable_is_read_when_detection_runs(ecs_metadata, monkeypatch):
    monkeypatch.setenv(ecs.URI_ENV, ecs_metadata.url)

    provider = detect()

    assert isinstance(provider, StaticProvider)
    assert provider.identity().fleet_instance_id == TASK_ARN


def test_ecs_is_preferred_over_ec2_when_both_answer(ecs_metadata, imds):
    provider = detect({ecs.URI_ENV: ecs_metadata.url, ec2.ENDPOINT_ENV: imds.url})

    assert provider.identity().fleet_info["computeType"] == "aws_fargate_task"
    assert imds.requests == []


@pytest.mark.parametrize("task", [["not", "an", "object"], {"TaskARN": ""}, {"Limits": {"CPU": 1}}, b"{"])
def test_a_useless_task_document_falls_through_to_ec2(ecs_metadata, imds, task):
    ecs_metadata.fake.task = task

    provider = detect({ecs.URI_ENV: ecs_metadata.url, ec2.ENDPOINT_ENV: imds.url})

    assert provider.identity().fleet_info["computeType"] == "aws_ec2_instance"
    assert len(ecs_metadata.requests) == 1


def test_an_endpoint_without_the_task_falls_through_to_ec2(ecs_metadata, imds):
    provider = detect({ecs.URI_ENV: ecs_metadata.server.url + "/v4/gone", ec2.ENDPOINT_ENV: imds.url})

    assert provider.identity().fleet_info["computeType"] == "aws_ec2_instance"


@pytest.mark.timeout(30)
def test_an_endpoint_that_never_answers_is_given_up(silent_endpoint):
    with pytest.raises(MetadataError):
        ecs.lookup({ecs.URI_ENV: silent_endpoint})


def test_a_task_arn_too_long_for_the_api_gives_the_task_id(ecs_metadata):
    long_arn = "arn:aws:ecs:us-west-2:111122223333:task/" + "c" * 255 + "/0123456789abcdef0123456789abcdef"
    ecs_metadata.fake.task["TaskARN"] = long_arn

    identity = ecs.lookup({ecs.URI_ENV: ecs_metadata.url})

    assert identity is not None
    assert identity.fleet_instance_id == "0123456789abcdef0123456789abcdef"
    assert identity.fleet_info["taskArn"] == long_arn
