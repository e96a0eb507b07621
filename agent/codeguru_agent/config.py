"""The agent's configuration: one frozen value built from defaults, environment and arguments.

Precedence, lowest first: defaults < the service's ConfigureAgent answer < environment variables <
constructor arguments. Every option has one keyword name and one environment variable. A bad
environment value never raises: it is logged once as a WARNING naming the variable, the value and
the value used instead (with its source, when that is not the default: a valid group ARN supplies
the group name and region). A bad keyword argument from code raises ``TypeError`` at the call site
only for unknown names; bad values are treated like bad environment values, because the agent must
never break the host's start-up.

``start()`` imports this module on the host's thread, so it stays cheap to import: no
``dataclasses`` (it pulls in ``inspect``), no ``re`` or ``datetime`` unless needed, and no
``from __future__ import annotations`` (which would make ``NamedTuple`` compile every annotation).
"""

import logging
import os
import string
import sys
from typing import Any, Callable, Dict, Final, FrozenSet, List, Mapping, NamedTuple, Optional, Tuple

logger = logging.getLogger(__name__)

ENV_PREFIX: Final = "AWS_CODEGURU_PROFILER_"
MIN_REPORTING_INTERVAL_MS: Final = 1_000
MIN_SAMPLING_INTERVAL_MS: Final = 1
MAX_SAMPLING_INTERVAL_MS: Final = 60_000
_INFINITY: Final = float("inf")
_GROUP_NAME_CHARACTERS: Final = frozenset(string.ascii_letters + string.digits + "_-")
"""The service's ``[\\w-]{1,255}``, ASCII only (Python's ``\\w`` is not)."""
_ARN_REGEX: Final = (
    r"arn:(?P<partition>aws[\w-]*):codeguru-profiler:(?P<region>[a-z0-9-]+):(?P<account>\d{12}):"
    r"profilingGroup/(?P<name>[\w-]{1,255})"
)
"""Compiled on first use (with re.ASCII, and used with fullmatch): few users give an ARN."""


def is_group_name(name: str) -> bool:
    """A valid profiling group name: 1 to 255 ASCII letters, digits, ``_`` or ``-``, nothing else."""
    return 0 < len(name) <= 255 and all(character in _GROUP_NAME_CHARACTERS for character in name)


def _arn_pattern() -> Any:
    import re

    return re.compile(_ARN_REGEX, re.ASCII)


class UnknownOption(TypeError):
    """A keyword argument that names no option: the one mistake that raises, at the call site."""


class AgentConfig(NamedTuple):
    """Everything the agent needs to know, resolved once when it starts.

    A NamedTuple rather than a dataclass: ``start()`` imports this module on the host's thread,
    and ``dataclasses`` (with ``inspect``) would cost that thread several milliseconds.
    """

    profiling_group_name: Optional[str] = None
    region_name: Optional[str] = None
    enabled: bool = True
    sampling_interval_ms: float = 10.0
    reporting_interval_ms: int = 300_000
    profile_format: str = "json"
    max_stack_depth: int = 1000
    max_threads: int = 100
    excluded_threads: FrozenSet[str] = frozenset()
    killswitch_file: str = "/var/tmp/killProfiler"
    cpu_limit_percent: float = 1.0
    memory_limit_mb: float = 10.0
    local_dir: Optional[str] = None
    shutdown_timeout_ms: int = 5_000
    log_level: Optional[str] = None
    endpoint_url: Optional[str] = None
    credential_profile: Optional[str] = None
    backlog_max_profiles: int = 20
    backlog_max_mb: float = 32.0
    spool_dir: Optional[str] = None
    auto_create_group: bool = False
    asyncio_tasks: bool = True
    """Sample asyncio tasks (and gevent greenlets) as units of work where a program uses them."""
    max_tasks: int = 300
    """Tasks (or greenlets) walked per tick at most: above it a random subset, weighted."""
    main_thread_timer: bool = True
    """Sample the main thread with a SIGALRM interval timer (``sampling/timer.py``) where the
    program does not use SIGALRM itself: its CPU bursts shorter than the switch interval show."""
    user_set: FrozenSet[str] = frozenset()
    """Options set by an argument or the environment: the service's answer must not change them."""

    def with_server_configuration(self, answer: Mapping[str, Any]) -> "AgentConfig":
        """Apply a ConfigureAgent answer to the options the user left to the service."""
        changes: Dict[str, Any] = {}
        period_s = _positive_number(answer.get("periodInSeconds"))
        if period_s is not None:
            changes["reporting_interval_ms"] = max(MIN_REPORTING_INTERVAL_MS, int(period_s * 1000))
        parameters = answer.get("agentParameters") or {}
        sampling_ms = _positive_number(parameters.get("SamplingIntervalInMilliseconds"))
        if sampling_ms is not None:
            changes["sampling_interval_ms"] = min(MAX_SAMPLING_INTERVAL_MS, max(MIN_SAMPLING_INTERVAL_MS, sampling_ms))
        depth = _positive_number(parameters.get("MaxStackDepth"))
        if depth is not None:
            changes["max_stack_depth"] = int(depth)
        memory_percent = _positive_number(parameters.get("MemoryUsageLimitPercent"))
        if memory_percent is not None and memory_percent <= 100:
            changes["memory_limit_mb"] = _memory_mb_for_percent(memory_percent)
        allowed = {k: v for k, v in changes.items() if k not in self.user_set}
        return self._replace(**allowed) if allowed else self


def _finite(number: float) -> bool:
    """``math.isfinite`` without importing ``math`` (a shared library) on the host's thread."""
    return number == number and number not in (_INFINITY, -_INFINITY)  # NaN is the one unequal to itself


def _positive_number(value: Any) -> Optional[float]:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if _finite(number) and number > 0 else None


def _memory_mb_for_percent(percent: float) -> float:
    """The service's MemoryUsageLimitPercent as megabytes of this machine's memory."""
    try:
        import psutil

        total = psutil.virtual_memory().total
    except Exception:  # psutil is optional at this point; a guess is better than failing
        total = 1 << 30
    return total * percent / 100.0 / 2**20


# --- parsing -------------------------------------------------------------------------------------

Parser = Callable[[str], Any]
Warn = Callable[[str], None]
Reject = Callable[[str, str, str], None]
"""``reject(field, setting, reason)``: ``setting`` (``name=value``) cannot be used for ``field``."""


class _Invalid(ValueError):
    """A value that cannot be used; the message says why."""


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise _Invalid("expected true or false")


def _number(low: float, high: float, integer: bool) -> Parser:
    def parse(text: str) -> Any:
        try:
            number = float(text)
        except ValueError:
            raise _Invalid("not a number") from None
        if not _finite(number):
            raise _Invalid("not a finite number")
        if integer and number != int(number):
            raise _Invalid("not a whole number")
        if not low <= number <= high:
            raise _Invalid(f"outside {low:g}..{high:g}")
        return int(number) if integer else number

    return parse


def _choice(*choices: str) -> Parser:
    def parse(text: str) -> str:
        lowered = text.strip().lower()
        if lowered not in choices:
            raise _Invalid(f"expected one of {', '.join(choices)}")
        return lowered

    return parse


def _text(text: str) -> str:
    if not text.strip():
        raise _Invalid("empty")
    return text.strip()


def _group_name(text: str) -> str:
    if not is_group_name(text):
        raise _Invalid("a profiling group name is 1 to 255 letters, digits, '_' or '-'")
    return text


def _names(text: str) -> FrozenSet[str]:
    return frozenset(name.strip() for name in text.split(",") if name.strip())


def _log_level(text: str) -> str:
    level = text.strip().upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
        raise _Invalid("expected DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level


class _Option:
    """One option: its keyword, its environment variable (if any) and its parser.

    A plain class, like :class:`Resolution`: a NamedTuple costs a fifth of a millisecond to define,
    on the host's thread in ``start()``.
    """

    __slots__ = ("env", "field", "parse")

    def __init__(self, field: str, env: Optional[str], parse: Parser) -> None:
        self.field = field
        self.env = env
        self.parse = parse


OPTIONS: Final[Tuple[_Option, ...]] = (
    _Option("profiling_group_name", ENV_PREFIX + "GROUP_NAME", _group_name),
    _Option("region_name", ENV_PREFIX + "TARGET_REGION", _text),
    _Option("enabled", ENV_PREFIX + "ENABLED", _parse_bool),
    _Option(
        "sampling_interval_ms",
        ENV_PREFIX + "SAMPLING_INTERVAL_MS",
        _number(MIN_SAMPLING_INTERVAL_MS, MAX_SAMPLING_INTERVAL_MS, False),
    ),
    _Option(
        "reporting_interval_ms",
        ENV_PREFIX + "REPORTING_INTERVAL_MS",
        _number(MIN_REPORTING_INTERVAL_MS, 24 * 3600 * 1000, True),
    ),
    _Option("profile_format", ENV_PREFIX + "FORMAT", _choice("json", "ion")),
    _Option("max_stack_depth", ENV_PREFIX + "MAX_STACK_DEPTH", _number(1, 10_000, True)),
    _Option("max_threads", ENV_PREFIX + "MAX_THREADS", _number(1, 100_000, True)),
    _Option("excluded_threads", ENV_PREFIX + "EXCLUDED_THREADS", _names),
    _Option("killswitch_file", ENV_PREFIX + "KILLSWITCH_FILE", _text),
    _Option("cpu_limit_percent", ENV_PREFIX + "CPU_LIMIT_PERCENT", _number(0.01, 100, False)),
    _Option("memory_limit_mb", ENV_PREFIX + "MEMORY_LIMIT_MB", _number(0.1, 100_000, False)),
    _Option("local_dir", ENV_PREFIX + "LOCAL_DIR", _text),
    _Option("shutdown_timeout_ms", ENV_PREFIX + "SHUTDOWN_TIMEOUT_MS", _number(0, 600_000, True)),
    _Option("log_level", ENV_PREFIX + "LOG_LEVEL", _log_level),
    _Option("endpoint_url", "AWS_ENDPOINT_URL_CODEGURUPROFILER", _text),
    _Option("credential_profile", None, _text),
    _Option("backlog_max_profiles", ENV_PREFIX + "BACKLOG_MAX_PROFILES", _number(1, 10_000, True)),
    _Option("backlog_max_mb", ENV_PREFIX + "BACKLOG_MAX_MB", _number(0.1, 100_000, False)),
    _Option("spool_dir", ENV_PREFIX + "SPOOL_DIR", _text),
    _Option("auto_create_group", ENV_PREFIX + "AUTO_CREATE_GROUP", _parse_bool),
    _Option("asyncio_tasks", ENV_PREFIX + "ASYNCIO_TASKS", _parse_bool),
    _Option("max_tasks", ENV_PREFIX + "MAX_TASKS", _number(1, 100_000, True)),
    _Option("main_thread_timer", ENV_PREFIX + "MAIN_THREAD_TIMER", _parse_bool),
)
_BY_FIELD: Final = {option.field: option for option in OPTIONS}
GROUP_ARN_ENV: Final = ENV_PREFIX + "GROUP_ARN"
CREDENTIAL_PATH_ENV: Final = ENV_PREFIX + "CREDENTIAL_PATH"

# The official agent's ``environment_override`` keys that mean the same as one of our options.
_OVERRIDE_KEYS: Final = {
    "sampling_interval": "sampling_interval_ms",
    "reporting_interval": "reporting_interval_ms",
    "max_stack_depth": "max_stack_depth",
    "excluded_threads": "excluded_threads",
    "killswitch_filepath": "killswitch_file",
    "cpu_limit_percentage": "cpu_limit_percent",
    "endpoint_url": "endpoint_url",
    "max_threads": "max_threads",
}


class Resolution:
    """A resolved configuration and the warnings met on the way (already logged)."""

    __slots__ = ("config", "warnings")

    def __init__(self, config: AgentConfig, warnings: Tuple[str, ...]) -> None:
        self.config = config
        self.warnings = warnings


def resolve(arguments: Optional[Mapping[str, Any]] = None, environ: Optional[Mapping[str, str]] = None) -> Resolution:
    """Build the configuration from keyword arguments over environment variables over defaults."""
    env = os.environ if environ is None else environ
    # A rejected value's warning names the value used instead, known only once every layer is read
    # (a valid ARN or an argument may supply it), so warnings are kept as (field or None, text).
    problems: List[Tuple[Optional[str], str]] = []
    values: Dict[str, Any] = {}
    sources: Dict[str, str] = {}

    def warn(message: str) -> None:
        problems.append((None, message))

    def reject(field: str, setting: str, reason: str) -> None:
        problems.append((field, f"{setting} is invalid ({reason})"))

    for option in OPTIONS:
        if option.env is None or option.env not in env:
            continue
        raw = env[option.env]
        try:
            values[option.field], sources[option.field] = option.parse(raw), option.env
        except _Invalid as reason:
            reject(option.field, f"{option.env}={raw!r}", str(reason))

    for name, value in _from_arn(env.get(GROUP_ARN_ENV), warn).items():
        if name in values and values[name] != value:
            logger.info("%s overrides %s from the environment", GROUP_ARN_ENV, _BY_FIELD[name].env)
        values[name], sources[name] = value, GROUP_ARN_ENV
    if env.get(CREDENTIAL_PATH_ENV):
        warn(f"{CREDENTIAL_PATH_ENV} is not supported; use AWS_SHARED_CREDENTIALS_FILE or a credential profile")

    for name, (value, source) in _arguments(arguments or {}, warn, reject).items():
        values[name], sources[name] = value, source

    warnings = tuple(
        text if field is None else f"{text}; using {_used_instead(field, values, sources)} instead"
        for field, text in problems
    )
    for message in warnings:
        logger.warning(message)
    return Resolution(AgentConfig(**values, user_set=frozenset(values)), warnings)


def _used_instead(field: str, values: Mapping[str, Any], sources: Mapping[str, str]) -> str:
    """The value ``field`` ends up with, and where it came from unless it is the default."""
    if field not in values:
        return _show(AgentConfig._field_defaults[field])
    return f"{_show(values[field])} from {sources[field]}"


def _from_arn(arn: Optional[str], warn: Warn) -> Dict[str, str]:
    if not arn:
        return {}
    match = _arn_pattern().fullmatch(arn.strip())
    if match is None:
        warn(
            f"{GROUP_ARN_ENV}={arn!r} is not a profiling group ARN "
            "(arn:aws:codeguru-profiler:REGION:ACCOUNT:profilingGroup/NAME); ignoring it"
        )
        return {}
    return {"profiling_group_name": match["name"], "region_name": match["region"]}


def _arguments(arguments: Mapping[str, Any], warn: Warn, reject: Reject) -> Dict[str, Tuple[Any, str]]:
    """Keyword arguments from code, with the official agent's override names mapped to ours: each
    option's value and the argument it came from."""
    values: Dict[str, Tuple[Any, str]] = {}
    for name, value in arguments.items():
        if value is None:
            continue
        if name == "environment_override":
            values.update(_official_overrides(value, warn, reject))
            continue
        option = _BY_FIELD.get(name)
        if option is None:
            raise UnknownOption(f"unknown codeguru_agent option {name!r}")
        try:
            values[name] = (_coerce(option, value), f"the {name} argument")
        except _Invalid as reason:
            reject(name, f"{name}={value!r}", str(reason))
    return values


def _official_overrides(overrides: Mapping[str, Any], warn: Warn, reject: Reject) -> Dict[str, Tuple[Any, str]]:
    values: Dict[str, Tuple[Any, str]] = {}
    if not isinstance(overrides, Mapping):
        warn(f"environment_override={overrides!r} is not a dict; ignoring it")
        return values
    for key, value in overrides.items():
        name = _OVERRIDE_KEYS.get(key)
        if name is None:
            logger.info("environment_override key %r has no equivalent here and is ignored", key)
            continue
        value = _milliseconds_if_timedelta(value)
        setting = f"environment_override[{key!r}]"
        try:
            values[name] = (_coerce(_BY_FIELD[name], value), setting)
        except _Invalid as reason:
            reject(name, f"{setting}={value!r}", str(reason))
    return values


def _coerce(option: _Option, value: Any) -> Any:
    """A keyword argument's value checked with the same rules as its environment variable."""
    if option.parse is _parse_bool and isinstance(value, bool):
        return value
    if option.field == "excluded_threads":
        if isinstance(value, str):
            return _names(value)
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise _Invalid("expected thread names: a comma-separated string or a collection")
        return frozenset(str(name) for name in value)
    return option.parse(str(_milliseconds_if_timedelta(value)))


def _milliseconds_if_timedelta(value: Any) -> Any:
    """A ``datetime.timedelta`` (as the official agent takes intervals) in milliseconds; else as given.

    Whoever holds a timedelta has imported ``datetime``; this module does not, to keep start() cheap.
    """
    datetime_module = sys.modules.get("datetime")
    timedelta = getattr(datetime_module, "timedelta", None)
    if timedelta is not None and isinstance(value, timedelta):
        return value.total_seconds() * 1000
    return value


def _show(value: Any) -> str:
    if isinstance(value, frozenset):
        return ",".join(sorted(value)) or "none"
    return "none" if value is None else str(value)


def environment_variables() -> Dict[str, str]:
    """Each option's environment variable by option name, for documentation and tests."""
    return {option.field: option.env for option in OPTIONS if option.env is not None}
