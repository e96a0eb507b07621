"""AWS_CODEGURU_PROFILER_GROUP_ARN: name and region from the ARN, over their own variables; and what
the warning for a bad group name or region says is used instead."""

from __future__ import annotations

import logging

import pytest

from codeguru_agent.config import resolve

ARN_ENV = "AWS_CODEGURU_PROFILER_GROUP_ARN"
NAME_ENV = "AWS_CODEGURU_PROFILER_GROUP_NAME"
REGION_ENV = "AWS_CODEGURU_PROFILER_TARGET_REGION"
ARN = "arn:aws:codeguru-profiler:eu-west-1:123456789012:profilingGroup/Checkout-Service_2"


def test_a_valid_arn_sets_the_group_and_region():
    config = resolve(environ={ARN_ENV: ARN}).config

    assert (config.profiling_group_name, config.region_name) == ("Checkout-Service_2", "eu-west-1")


def test_the_arn_wins_over_the_group_name_and_region_variables():
    env = {
        ARN_ENV: ARN,
        "AWS_CODEGURU_PROFILER_GROUP_NAME": "Other",
        "AWS_CODEGURU_PROFILER_TARGET_REGION": "us-east-1",
    }

    resolution = resolve(environ=env)

    assert (resolution.config.profiling_group_name, resolution.config.region_name) == (
        "Checkout-Service_2",
        "eu-west-1",
    )
    assert resolution.warnings == ()


def test_arguments_still_win_over_the_arn():
    config = resolve({"profiling_group_name": "FromCode", "region_name": "ap-south-1"}, {ARN_ENV: ARN}).config

    assert (config.profiling_group_name, config.region_name) == ("FromCode", "ap-south-1")


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws-cn:codeguru-profiler:cn-north-1:123456789012:profilingGroup/Checkout-Service_2",
        "arn:aws-us-gov:codeguru-profiler:us-gov-west-1:123456789012:profilingGroup/Checkout-Service_2",
        f"  {ARN}\n",
    ],
)
def test_other_partitions_and_surrounding_space_are_accepted(arn):
    config = resolve(environ={ARN_ENV: arn}).config

    assert config.profiling_group_name == "Checkout-Service_2"


@pytest.mark.parametrize(
    "arn",
    [
        "Checkout-Service_2",
        "arn:aws:codeguru-profiler:eu-west-1:123456789012:profilingGroup/",
        "arn:aws:codeguru-profiler:eu-west-1:12345:profilingGroup/Checkout",
        "arn:aws:lambda:eu-west-1:123456789012:function/Checkout",
        "arn:aws:codeguru-profiler:eu-west-1:123456789012:profilingGroup/Check.out",
        "arn:aws:codeguru-profiler:eu-west-1:123456789012:profilingGroup/a/b",
    ],
)
def test_a_malformed_arn_warns_once_and_changes_nothing_else(arn, caplog):
    env = {
        ARN_ENV: arn,
        "AWS_CODEGURU_PROFILER_GROUP_NAME": "Orders",
        "AWS_CODEGURU_PROFILER_TARGET_REGION": "us-east-2",
        "AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS": "20",
    }
    caplog.set_level(logging.DEBUG, logger="codeguru_agent")

    config = resolve(environ=env).config

    warnings = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert ARN_ENV in warnings[0].getMessage()
    assert repr(arn) in warnings[0].getMessage()
    assert (config.profiling_group_name, config.region_name, config.sampling_interval_ms) == (
        "Orders",
        "us-east-2",
        20.0,
    )


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:codeguru-profiler:eu-west-1:123456789012:profilingGroup/Kasse-Grüße",
        "arn:aws:codeguru-profiler:eu-west-1:١٢٣٤٥٦٧٨٩٠١٢:profilingGroup/Checkout",
    ],
)
def test_non_ascii_names_and_account_digits_are_malformed(arn):
    """The service's patterns are ASCII-only; Python's \\w and \\d are not, unless told."""
    resolution = resolve(environ={ARN_ENV: arn})

    assert resolution.config.profiling_group_name is None
    assert len(resolution.warnings) == 1


@pytest.mark.parametrize("name", ["MyGroup\n", "\nMyGroup", "My\nGroup", "MyGroup "])
def test_a_group_name_with_a_line_break_or_space_is_invalid(name):
    resolution = resolve(environ={NAME_ENV: name})

    assert resolution.config.profiling_group_name is None
    assert resolution.warnings == (
        f"{NAME_ENV}={name!r} is invalid (a profiling group name is 1 to 255 letters, "
        "digits, '_' or '-'); using none instead",
    )


@pytest.mark.parametrize(
    "variable, value, used",
    [
        (NAME_ENV, "has space", "Checkout-Service_2"),
        (NAME_ENV, "MyGroup\n", "Checkout-Service_2"),
        (REGION_ENV, "   ", "eu-west-1"),
    ],
)
def test_a_bad_name_or_region_beside_a_valid_arn_warns_that_the_arns_value_is_used(variable, value, used, caplog):
    caplog.set_level(logging.DEBUG, logger="codeguru_agent")

    resolution = resolve(environ={ARN_ENV: ARN, variable: value})

    assert (resolution.config.profiling_group_name, resolution.config.region_name) == (
        "Checkout-Service_2",
        "eu-west-1",
    )
    warnings = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert warnings == list(resolution.warnings)
    assert len(warnings) == 1 and warnings[0].startswith(f"{variable}={value!r} is invalid ("), warnings
    assert warnings[0].endswith(f"; using {used} from {ARN_ENV} instead"), warnings[0]


def test_a_bad_value_overridden_by_an_argument_warns_that_the_arguments_value_is_used():
    resolution = resolve(
        {"profiling_group_name": "FromCode", "sampling_interval_ms": "fast"},
        {NAME_ENV: "has space", "AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS": "20"},
    )

    assert (resolution.config.profiling_group_name, resolution.config.sampling_interval_ms) == ("FromCode", 20.0)
    assert [warning.split("; ")[-1] for warning in resolution.warnings] == [
        "using FromCode from the profiling_group_name argument instead",
        "using 20.0 from AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS instead",
    ]


def test_a_bad_official_override_names_the_value_used_instead():
    resolution = resolve(
        {"environment_override": {"sampling_interval": "soon"}}, {"AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS": "20"}
    )

    assert resolution.config.sampling_interval_ms == 20.0
    assert resolution.warnings == (
        "environment_override['sampling_interval']='soon' is invalid (not a number); "
        "using 20.0 from AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS instead",
    )
