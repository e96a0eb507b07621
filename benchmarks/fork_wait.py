"""How long the host's ``os.fork()`` waits for our agent while the agent loads boto3 on a busy host.

A fork must not cut an import in half (the child would inherit a held import lock), so it waits
while an agent thread is inside one; the agent loads its modules one at a time and begins none
while a fork is pending, so that wait is one module's import at most. Here a fresh process keeps
its main thread and a second thread busy (a CPU-bound host: each of the agent's file reads hands
the GIL back to them), starts the agent against a local endpoint and forks every few milliseconds
until the agent is ready to send (its uploader loaded boto3 and built its client). Each fork is timed
in the parent, around ``os.fork()``; the children leave at once. The same forks without an agent
give the floor. Figures are the worst and the median fork of each process, then the median of
those over ``--runs`` processes. Run with ``make fork-wait``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Dict, List

FORK_EVERY_S = 0.005
NO_AGENT_FORKS = 100


def _busy(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(i * i for i in range(1000))


def _fork_once() -> float:
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    elapsed = time.perf_counter() - started
    os.waitpid(pid, 0)
    return elapsed


def _child(with_agent: bool, url: str) -> None:
    """One process: prints ``name value`` lines."""
    stop = threading.Event()
    threading.Thread(target=_busy, args=(stop,), daemon=True).start()
    waits: List[float] = []
    if with_agent:
        import codeguru_agent

        profiler = codeguru_agent.start("Bench", region_name="us-east-1", endpoint_url=url)
        assert profiler is not None
        started = time.monotonic()
        while profiler._uploader is None or profiler._uploader.sink is None:  # the client is built
            waits.append(_fork_once())
            end = time.perf_counter() + FORK_EVERY_S
            while time.perf_counter() < end:
                pass
        print(f"load_s {time.monotonic() - started:.3f}")
    else:
        for _ in range(NO_AGENT_FORKS):
            waits.append(_fork_once())
    stop.set()
    print(f"forks {len(waits)}")
    print(f"worst_fork_ms {max(waits) * 1000:.2f}")
    print(f"median_fork_ms {statistics.median(waits) * 1000:.2f}")
    sys.stdout.flush()
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--child", choices=("agent", "none"))
    parser.add_argument("--url", default="")
    args = parser.parse_args()
    if args.child:
        _child(args.child == "agent", args.url)
    import harness

    env = dict(os.environ, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")
    figures: Dict[str, Dict[str, List[float]]] = {"agent": {}, "none": {}}
    with harness.codeguru_endpoint() as endpoint:
        for run in range(args.runs):
            for arm in ("none", "agent"):
                done = subprocess.run(
                    [sys.executable, __file__, "--child", arm, "--url", endpoint.url],
                    capture_output=True,
                    text=True,
                    timeout=300,
                    check=True,
                    env=env,
                )
                for line in done.stdout.splitlines():
                    name, value = line.split()
                    figures[arm].setdefault(name, []).append(float(value))
            print(f"run {run + 1}/{args.runs} done", file=sys.stderr)
    print(f"| os.fork() on a busy host, a fork every {FORK_EVERY_S * 1000:g} ms, medians of {args.runs} | value |")
    print("|---|---|")
    for arm, label in (("none", "without an agent"), ("agent", "while our agent loads boto3")):
        for name, values in figures[arm].items():
            print(f"| {label}: {name} | {statistics.median(values):.2f} |")


if __name__ == "__main__":
    main()
