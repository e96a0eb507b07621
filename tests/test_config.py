"""Configuration as the README states it: the order of precedence, booleans, the official agent's
``environment_override`` keys, the unsupported credential path, and what a ConfigureAgent answer may
change."""

from __future__ import annotations

import datetime
import logging
from typing import Any, Dict, List

import psutil
import pytest

from codeguru_agent import config as configuration

PREFIX = configuration.ENV_PREFIX


def resolved(arguments: Dict[str, Any], environ: Dict[str, str]) -> configuration.AgentConfig:
    return configuration.resolve(arguments, environ).config


def messages(caplog: pytest.LogCaptureFixture, level: int) -> List[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("codeguru_agent") and r.levelno == level]


def test_arguments_beat_the_environment_which_beats_the_defaults() -> None:
    variable = PREFIX + "SAMPLING_INTERVAL_MS"

    assert resolved({}, {}).sampling_interval_ms == 10.0
    assert resolved({}, {variable: "20"}).sampling_interval_ms == 20.0
    assert resolved({"sampling_interval_ms": 30}, {variable: "20"}).sampling_interval_ms == 30.0
    assert resolved({"sampling_interval_ms": 30}, {}).sampling_interval_ms == 30.0


TRUE_SPELLINGS = ("true", "1", "yes", "on", "TRUE", "Yes", "oN")
FALSE_SPELLINGS = ("false", "0", "no", "off", "FALSE", "No", "oFF")


@pytest.mark.parametrize("field", ["enabled", "auto_create_group"])
def test_every_boolean_spelling_in_any_case(field: str, caplog: pytest.LogCaptureFixture) -> None:
    variable = configuration.environment_variables()[field]
    with caplog.at_level(logging.WARNING, logger="codeguru_agent"):
        trues = [getattr(resolved({}, {variable: text}), field) for text in TRUE_SPELLINGS]
        falses = [getattr(resolved({}, {variable: text}), field) for text in FALSE_SPELLINGS]

    assert trues == [True] * len(TRUE_SPELLINGS) and falses == [False] * len(FALSE_SPELLINGS)
    assert messages(caplog, logging.WARNING) == []


OFFICIAL_KEYS = {
    "sampling_interval": (25, "sampling_interval_ms", 25.0),
    "reporting_interval": (120_000, "reporting_interval_ms", 120_000),
    "max_stack_depth": (50, "max_stack_depth", 50),
    "excluded_threads": ({"worker"}, "excluded_threads", frozenset({"worker"})),
    "killswitch_filepath": ("/tmp/stop-profiling", "killswitch_file", "/tmp/stop-profiling"),
    "cpu_limit_percentage": (5, "cpu_limit_percent", 5.0),
    "endpoint_url": ("http://127.0.0.1:9", "endpoint_url", "http://127.0.0.1:9"),
    "max_threads": (50, "max_threads", 50),
}


def test_every_official_environment_override_key_sets_its_option(caplog: pytest.LogCaptureFixture) -> None:
    overrides = {key: value for key, (value, _, _) in OFFICIAL_KEYS.items()}
    with caplog.at_level(logging.INFO, logger="codeguru_agent"):
        config = resolved({"environment_override": overrides}, {})

    assert {field: getattr(config, field) for _, field, _ in OFFICIAL_KEYS.values()} == {
        field: expected for _, field, expected in OFFICIAL_KEYS.values()
    }
    assert messages(caplog, logging.INFO) == [] and messages(caplog, logging.WARNING) == []


def test_a_timedelta_is_converted_and_an_unknown_key_is_one_info(caplog: pytest.LogCaptureFixture) -> None:
    overrides = {
        "sampling_interval": datetime.timedelta(milliseconds=40),
        "reporting_interval": datetime.timedelta(minutes=2),
        "report_interval_typo": 5,
    }
    with caplog.at_level(logging.INFO, logger="codeguru_agent"):
        config = resolved({"environment_override": overrides}, {})

    assert (config.sampling_interval_ms, config.reporting_interval_ms) == (40.0, 120_000)
    assert messages(caplog, logging.INFO) == [
        "environment_override key 'report_interval_typo' has no equivalent here and is ignored"
    ]
    assert messages(caplog, logging.WARNING) == []


def test_the_credential_path_variable_is_one_warning_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    environ = {PREFIX + "CREDENTIAL_PATH": "/home/me/.aws/credentials", PREFIX + "GROUP_NAME": "orders"}
    with caplog.at_level(logging.WARNING, logger="codeguru_agent"):
        config = resolved({}, environ)

    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1 and PREFIX + "CREDENTIAL_PATH" in warnings[0], warnings
    assert "AWS_SHARED_CREDENTIALS_FILE" in warnings[0]
    assert config == resolved({}, {PREFIX + "GROUP_NAME": "orders"})


ANSWER = {
    "shouldProfile": True,
    "periodInSeconds": 120,
    "agentParameters": {
        "SamplingIntervalInMilliseconds": "40",
        "MaxStackDepth": "64",
        "MemoryUsageLimitPercent": "1",
    },
}


def test_the_service_sets_the_options_left_to_it() -> None:
    config = resolved({}, {}).with_server_configuration(ANSWER)

    assert config.reporting_interval_ms == 120_000
    assert config.sampling_interval_ms == 40.0
    assert config.max_stack_depth == 64
    assert config.memory_limit_mb == pytest.approx(psutil.virtual_memory().total / 100 / 2**20)


def test_the_service_never_changes_an_option_you_set() -> None:
    by_argument = resolved({"sampling_interval_ms": 25, "max_stack_depth": 300}, {})
    by_environment = resolved(
        {},
        {PREFIX + "REPORTING_INTERVAL_MS": "60000", PREFIX + "MEMORY_LIMIT_MB": "12", PREFIX + "MAX_STACK_DEPTH": "9"},
    )

    answered = by_argument.with_server_configuration(ANSWER)
    assert (answered.sampling_interval_ms, answered.max_stack_depth) == (25.0, 300)
    assert answered.reporting_interval_ms == 120_000, "what was not set is the service's"
    answered = by_environment.with_server_configuration(ANSWER)
    assert (answered.reporting_interval_ms, answered.memory_limit_mb, answered.max_stack_depth) == (60_000, 12.0, 9)
    assert answered.sampling_interval_ms == 40.0
