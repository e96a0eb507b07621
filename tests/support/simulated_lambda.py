"""A simulated Lambda function in a subprocess: invoke it, freeze it between invocations, read its log.

The runtime script and the function's code live in ``tests/aws_lambda/``."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List

import codeguru_agent.aws_lambda as aws_lambda_package
from support.collector_client import aws_env

LAMBDA_TESTS = Path(__file__).parent.parent / "aws_lambda"
TASK_ROOT = LAMBDA_TESTS / "task_root"
RUNTIME = LAMBDA_TESTS / "runtime.py"
FUNCTION_NAME = "orders-api"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:" + FUNCTION_NAME
MEMORY_MB = 512
EXECUTION_ENV = "AWS_Lambda_python3.12"
EXEC_WRAPPER = Path(aws_lambda_package.__file__).parent / "codeguru_profiler_lambda_exec"
INVOCATION_TIMEOUT_S = 60.0


def lambda_environment(collector_url: str, **extra: str) -> Dict[str, str]:
    """What Lambda sets for a Python function, pointed at the collector; ``extra`` is the function's own."""
    env = aws_env(collector_url)
    for name in list(env):
        if name.startswith("AWS_CODEGURU_PROFILER_") or name in ("HANDLER_ENV_NAME_FOR_CODEGURU", "_HANDLER"):
            del env[name]
    env.update(
        AWS_LAMBDA_FUNCTION_NAME=FUNCTION_NAME,
        AWS_LAMBDA_FUNCTION_VERSION="$LATEST",
        AWS_LAMBDA_FUNCTION_MEMORY_SIZE=str(MEMORY_MB),
        AWS_EXECUTION_ENV=EXECUTION_ENV,
        AWS_REGION="us-east-1",
        LAMBDA_TASK_ROOT=str(TASK_ROOT),
        LAMBDA_RUNTIME_DIR=os.path.dirname(sys.executable),
        SIMULATED_FUNCTION_ARN=FUNCTION_ARN,
        AWS_CODEGURU_PROFILER_REPORTING_INTERVAL_MS="1000",
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(extra)
    return env


class SimulatedLambda:
    """One execution environment: the runtime script, called event by event over its stdin."""

    def __init__(self, env: Dict[str, str], exec_wrapper: bool = False) -> None:
        command = [sys.executable, str(RUNTIME)]
        if exec_wrapper:
            command = [str(EXEC_WRAPPER), *command]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 -- read and closed by stop(), after the process ends
        self.process = subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            cwd=str(TASK_ROOT),
        )
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="test-lambda-stdout", daemon=True)
        self._reader.start()
        self.invocations: List[Dict[str, Any]] = []
        self.frozen_s = 0.0

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)
        self._lines.put("")

    def invoke(self, **event: Any) -> Dict[str, Any]:
        """Send one event and wait for the invocation's outcome."""
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(event) + "\n")
        self.process.stdin.flush()
        try:
            line = self._lines.get(timeout=INVOCATION_TIMEOUT_S)
        except queue.Empty:
            raise AssertionError(f"no answer within {INVOCATION_TIMEOUT_S} s; stderr:\n{self.stderr()}") from None
        if not line:
            raise AssertionError(f"the runtime exited with {self.process.wait()}; stderr:\n{self.stderr()}")
        outcome: Dict[str, Any] = json.loads(line)
        self.invocations.append(outcome)
        return outcome

    def freeze(self, hold_s: float) -> None:
        """Stop the whole process as Lambda does between invocations, for at least ``hold_s``."""
        os.kill(self.process.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10.0
        while _state(self.process.pid) != "T":
            assert time.monotonic() < deadline, "the runtime did not stop"
            time.sleep(0.005)
        stopped_at = time.monotonic()
        time.sleep(hold_s)  # the frozen time itself, not a synchronisation
        self.frozen_s += time.monotonic() - stopped_at
        os.kill(self.process.pid, signal.SIGCONT)

    def close(self, timeout_s: float = 30.0) -> int:
        """End the environment (the agent flushes at exit) and return its exit status."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            try:
                self.process.stdin.write("exit\n")
                self.process.stdin.close()
            except BrokenPipeError:
                pass
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"the runtime did not exit; stderr:\n{self.stderr()}") from None
        return self.process.returncode

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        self._reader.join(5)
        self._stderr.close()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as file:
        return file.read().rsplit(")", 1)[1].split()[0]
