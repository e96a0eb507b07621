"""Platform detection order, the Lambda seam and the per-process default identity."""

from __future__ import annotations

import json
import logging
import os

import pytest

from codeguru_agent.fleet import detect, ec2, ecs, lambda_provider
from codeguru_agent.fleet.default import DefaultProvider
from codeguru_agent.fleet.lambda_ import LambdaProvider

OFF_PLATFORM = {ec2.DISABLED_ENV: "true"}
LAMBDA = {
    "AWS_LAMBDA_FUNCTION_NAME": "checkout",
    "LAMBDA_TASK_ROOT": "/var/task",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "1024",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.12",
}


def test_default_identity_names_this_process():
    identity = detect(OFF_PLATFORM).identity()

    assert identity.fleet_info == {
        "id": identity.fleet_instance_id,
        "type": "UNKNOWN",
        "vCPUs": len(os.sched_getaffinity(0)),
    }
    assert identity.configure_agent_metadata == {}


def test_default_identity_is_stable_within_a_process():
    first = detect(OFF_PLATFORM)

    assert isinstance(first, DefaultProvider)
    assert {
        first.identity().fleet_instance_id,
        first.identity().fleet_instance_id,
        DefaultProvider().identity().fleet_instance_id,
    } == {first.identity().fleet_instance_id}


def test_default_identity_is_new_in_a_forked_child():
    provider = detect(OFF_PLATFORM)
    parent_id = provider.identity().fleet_instance_id
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            ids = [provider.identity().fleet_instance_id, detect(OFF_PLATFORM).identity().fleet_instance_id]
            os.write(write_end, json.dumps(ids).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_ids = json.loads(pipe.read())
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert child_ids[0] == child_ids[1] != parent_id
    assert provider.identity().fleet_instance_id == parent_id


def test_lambda_is_identified_from_the_environment():
    provider = detect(LAMBDA)

    assert isinstance(provider, LambdaProvider)
    identity = provider.identity()
    assert identity.fleet_instance_id == "checkout"
    assert identity.fleet_info == {
        "computeType": "aws_lambda",
        "functionName": "checkout",
        "memoryLimitInMB": 1024,
        "executionEnv": "AWS_Lambda_python3.12",
    }
    assert identity.configure_agent_metadata == {
        "ComputePlatform": "AWSLambda",
        "AgentId": DefaultProvider().identity().fleet_instance_id,
        "LambdaMemoryLimitInMB": "1024",
        "ExecutionEnvironment": "AWS_Lambda_python3.12",
    }


@pytest.mark.parametrize("missing", ["AWS_LAMBDA_FUNCTION_NAME", "LAMBDA_TASK_ROOT"])
def test_lambda_needs_both_variables(missing):
    env = {name: value for name, value in LAMBDA.items() if name != missing}

    assert lambda_provider(env) is None
    assert isinstance(detect({**env, **OFF_PLATFORM}), DefaultProvider)


def test_lambda_is_preferred_over_ecs(ecs_metadata):
    provider = detect({**LAMBDA, ecs.URI_ENV: ecs_metadata.url})

    assert provider.identity().fleet_info["computeType"] == "aws_lambda"
    assert ecs_metadata.requests == []


def test_a_failing_platform_is_skipped_quietly(ecs_metadata, monkeypatch, caplog):
    def broken(environ):
        raise RuntimeError("metadata parser bug")

    monkeypatch.setattr(ecs, "lookup", broken)
    caplog.set_level(logging.DEBUG, logger="codeguru_agent")

    provider = detect({ecs.URI_ENV: ecs_metadata.url, **OFF_PLATFORM})

    assert isinstance(provider, DefaultProvider)
    assert any("metadata parser bug" in record.getMessage() for record in caplog.records)
    assert all(record.levelno <= logging.INFO for record in caplog.records)
