"""A handle on a running collector, driven over HTTP so that it works the same for a collector in
this process and for one in a subprocess; and helpers to start the latter and to point boto3 at it."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, Optional

import boto3
from botocore.config import Config

from support.waiting import wait_until

DUMMY_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
REGION = "us-east-1"


def aws_env(url: str) -> Dict[str, str]:
    """The environment for a subprocess whose boto3 must talk to the collector at ``url`` only."""
    env = dict(os.environ)
    for name in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        env.pop(name, None)
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_ENDPOINT_URL_CODEGURUPROFILER=url,
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
    )
    return env


class CollectorHandle:
    """What a test needs of a collector: its URL, a boto3 client, and the ``/_test/`` hooks."""

    def __init__(self, url: str, process: Optional[subprocess.Popen] = None, db_path: Optional[str] = None) -> None:
        self.url = url
        self.process = process
        """The collector's process when it runs in a subprocess, else None."""
        self.db_path = db_path
        self._client: Any = None

    def client(self, max_attempts: Optional[int] = None, **config: Any) -> Any:
        """A stock boto3 ``codeguruprofiler`` client with dummy credentials. ``max_attempts`` (all
        tries, the first included) sets botocore's standard retry mode; other keywords go to
        ``botocore.config.Config``. The client without arguments is made once and reused."""
        if max_attempts is None and not config and self._client is not None:
            return self._client
        if max_attempts is not None:
            config["retries"] = {"mode": "standard", "total_max_attempts": max_attempts}
        client = boto3.client(
            "codeguruprofiler",
            endpoint_url=self.url,
            region_name=REGION,
            config=Config(**config) if config else None,
            **DUMMY_CREDENTIALS,
        )
        if max_attempts is None and not config:
            self._client = client
        return client

    def create_group(self, name: str, **kwargs: Any) -> Dict[str, Any]:
        """Create a profiling group through boto3; returns its ProfilingGroupDescription."""
        group: Dict[str, Any] = self.client().create_profiling_group(profilingGroupName=name, **kwargs)[
            "profilingGroup"
        ]
        return group

    def profiles(self, group: str) -> List[Dict[str, Any]]:
        """The group's stored profiles in arrival order, each with its parsed ``document``."""
        entries: List[Dict[str, Any]] = self._admin("GET", "/_test/profiles", query=f"profilingGroupName={group}")
        return entries

    def requests(self, operation: str) -> List[Dict[str, Any]]:
        """Every request the collector received for ``operation``, faulted ones included."""
        entries: List[Dict[str, Any]] = self._admin("GET", "/_test/requests", query=f"operation={operation}")
        return entries

    def fail_next(
        self,
        operation: str,
        count: int = 1,
        status: Optional[int] = 500,
        code: Optional[str] = "InternalServerException",
        delay_ms: int = 0,
        drop: bool = False,
        message: Optional[str] = None,
    ) -> None:
        """Make the next ``count`` requests of ``operation`` fail with ``status``/``code``; with
        ``status=None`` they are only delayed by ``delay_ms``; with ``drop`` the connection is
        closed without an answer (after the delay)."""
        fault: Dict[str, Any] = {"operation": operation, "count": count, "delayMs": delay_ms, "drop": drop}
        if status is not None and not drop:
            fault.update(status=status, code=code)
        if message is not None:
            fault["message"] = message
        self._admin("POST", "/_test/faults", fault)

    def clear_faults(self) -> None:
        self._admin("DELETE", "/_test/faults")

    def set_agent_configuration(
        self,
        group: Optional[str] = None,
        should_profile: Optional[bool] = None,
        period_s: Optional[int] = None,
        **agent_parameters: Any,
    ) -> Dict[str, Any]:
        """Override what ConfigureAgent answers, for one group or all; arguments left as None keep
        their current override, an agent parameter given as None removes its override."""
        change: Dict[str, Any] = {"agentParameters": agent_parameters}
        if group is not None:
            change["profilingGroupName"] = group
        if should_profile is not None:
            change["shouldProfile"] = should_profile
        if period_s is not None:
            change["periodInSeconds"] = period_s
        layer: Dict[str, Any] = self._admin("PUT", "/_test/agentConfiguration", change)
        return layer

    def wait_for_profiles(self, group: str, count: int, timeout_s: float = 10.0) -> List[Dict[str, Any]]:
        """Poll until the group has at least ``count`` stored profiles; fails after ``timeout_s``."""

        def enough() -> List[Dict[str, Any]]:
            profiles = self.profiles(group)
            return profiles if len(profiles) >= count else []

        def progress() -> str:
            return f"{count} profiles for {group!r} ({len(self.profiles(group))} arrived)"

        return wait_until(enough, timeout_s, progress)

    def _admin(self, method: str, path: str, body: Any = None, query: str = "") -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(
            self.url + path + ("?" + query if query else ""),
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                text = response.read().decode("utf-8")
        except urllib.error.HTTPError as error:
            raise AssertionError(
                f"{method} {path} answered {error.code}: {error.read().decode('utf-8', 'replace')}"
            ) from None
        return json.loads(text) if text else None


@contextlib.contextmanager
def spawn_collector(db_path: str, *args: str, start_timeout_s: float = 30.0) -> Iterator[CollectorHandle]:
    """Run ``python -m codeguru_agent.collector --port 0 --db DB --test-hooks ARGS``; killed on exit."""
    command = [sys.executable, "-m", "codeguru_agent.collector", "--port", "0", "--db", db_path, "--test-hooks", *args]
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            line = first_line(process, start_timeout_s)
            if not line.startswith("listening on "):
                process.kill()
                process.wait()
                stderr.seek(0)
                raise AssertionError(f"collector did not start: {line!r}\n{stderr.read().decode('utf-8', 'replace')}")
            yield CollectorHandle(line.split()[-1], process=process, db_path=db_path)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            assert process.stdout is not None
            process.stdout.close()


def first_line(process: subprocess.Popen, timeout_s: float) -> str:
    """The first line a process writes to stdout, waiting at most ``timeout_s``."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    reader = threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        return lines.get(timeout=timeout_s).strip()
    except queue.Empty:
        return ""
