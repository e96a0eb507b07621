"""The CodeGuru Profiler service as a sink: a stock botocore client, and its errors as outcomes.

botocore is imported here, lazily, on the uploader's thread.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Final, Mapping, Optional

from codeguru_agent.config import AgentConfig
from codeguru_agent.fleet import FleetIdentity
from codeguru_agent.host import forksafe, native
from codeguru_agent.reporting.sinks import Outcome, Result, SetupError

_RETRYABLE_CODES: Final = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "InternalServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)


_SERVICE_MODULES: Final = (
    "botocore.session",
    "botocore.config",
    "botocore.exceptions",
    "ssl",
    "urllib3.util.ssl_",
    "encodings.idna",
)
"""What the client and its first request import, loaded a module at a time (``forksafe.load``): a
fork that lands while this thread holds an import lock would leave the child hanging on that
module (``encodings.idna`` in the official agent's case), so each fork waits for one module."""


class ServiceSink:
    """The CodeGuru Profiler API through a stock botocore client, built once on the uploader's thread."""

    def __init__(self, config: AgentConfig, aws_session: Any = None, timeout_s: float = 10.0) -> None:
        forksafe.load(_SERVICE_MODULES)
        with native.outside_gevent_patch():  # the credential resolver and the client make SSL contexts
            self._client = self._build(config, aws_session, timeout_s)

    def _build(self, config: AgentConfig, aws_session: Any, timeout_s: float) -> Any:
        from botocore.config import Config

        if aws_session is not None:  # the application's boto3 Session
            session, default_region, create_client = aws_session, aws_session.region_name, aws_session.client
        else:
            session = _botocore_session(config.credential_profile)
            default_region, create_client = session.get_config_variable("region"), session.create_client
        region = config.region_name or default_region
        endpoint = (
            config.endpoint_url
            or os.environ.get("AWS_ENDPOINT_URL_CODEGURUPROFILER")
            or os.environ.get("AWS_ENDPOINT_URL")
        )
        if region is None:
            if endpoint is None:
                raise SetupError(
                    "no AWS region: set region_name, AWS_CODEGURU_PROFILER_TARGET_REGION or AWS_DEFAULT_REGION"
                )
            region = "us-east-1"  # a custom endpoint still needs a region to sign with
        if session.get_credentials() is None:
            raise SetupError("no AWS credentials found (environment, shared files, instance role)")
        _import_what_the_first_request_needs()
        self._group = config.profiling_group_name
        return create_client(
            "codeguruprofiler",
            region_name=region,
            endpoint_url=config.endpoint_url,
            config=Config(
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=min(timeout_s, 5.0),
                read_timeout=timeout_s,
                user_agent_extra="codeguru-agent",
            ),
        )

    def submit(self, body: bytes, content_type: str, token: str) -> Result:
        return self._call(
            self._client.post_agent_profile,
            profilingGroupName=self._group,
            agentProfile=body,
            contentType=content_type,
            profileToken=token,
        )

    def configure(self, identity: FleetIdentity) -> Result:
        result = self._call(
            self._client.configure_agent,
            profilingGroupName=self._group,
            fleetInstanceId=identity.fleet_instance_id,
            metadata=dict(identity.configure_agent_metadata),
        )
        if result.answer is None:
            return result
        # boto3 wraps the AgentConfiguration (the HTTP body) in a ``configuration`` member.
        return Result(result.outcome, result.reason, result.answer.get("configuration") or {})

    def create_group(self, compute_platform: str) -> Result:
        result = self._call(
            self._client.create_profiling_group, profilingGroupName=self._group, computePlatform=compute_platform
        )
        if result.outcome is Outcome.DROP and "ConflictException" in result.reason:
            return Result(Outcome.ACCEPTED, "already exists")
        return result

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing is best effort at shutdown
            pass

    def _call(self, operation: Any, **params: Any) -> Result:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        native.prepare_agent_hub()
        try:
            answer = operation(**params)
        except ClientError as error:
            return _classify(error)
        except NoCredentialsError as error:
            return Result(Outcome.RETRY, str(error))
        except BotoCoreError as error:  # connection refused or reset, timeouts, bad endpoints
            return Result(Outcome.RETRY, f"{type(error).__name__}: {error}")
        return Result(Outcome.ACCEPTED, answer=_strip_metadata(answer))


def _botocore_session(profile: Optional[str]) -> Any:
    """botocore's own session, the one a boto3 Session wraps, without importing boto3.

    ``import boto3`` pulls in s3transfer and ``concurrent.futures.thread``, whose import raises once
    the interpreter has begun to shut down: exactly when a short program's agent is still setting up
    and about to flush its only profile.
    """
    import botocore.session

    return botocore.session.Session(profile=profile)


def _import_what_the_first_request_needs() -> None:
    """Load now the codec the first HTTPS request would import later (see ``_SERVICE_MODULES``)."""
    "codeguru-profiler.us-east-1.amazonaws.com".encode("idna")


def _classify(error: Any) -> Result:
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    reason = f"{code or 'HTTP ' + str(status)}: {details.get('Message', '')}".strip()
    if code == "ResourceNotFoundException" or status == 404:
        return Result(Outcome.NOT_FOUND, reason)
    if code in _RETRYABLE_CODES or status == 429 or status >= 500:
        return Result(Outcome.RETRY, reason)
    return Result(Outcome.DROP, reason)


def _strip_metadata(answer: Mapping[str, Any]) -> Dict[str, Any]:
    return {key: value for key, value in answer.items() if key != "ResponseMetadata"}
