"""Measurement 6: the agent's added peak RSS over many distinct stacks, against its memory bound.

An hour at 100 samples per second would take an hour; what grows an agent's memory is not the
number of ticks but the number of distinct stacks, so this runs fast: W threads walk random paths
through a fixed random call tree over the generated application (about 25 frames deep), each round
every thread parks on a fresh path, and the agent ticks once. Almost every thread-sample is a stack
never seen before: far more distinct stacks than a service shows in an hour, in one interval (no
profile is sealed in between, the worst case for both agents). The ``none`` arm runs the same rounds
without an agent, so its growth is the workload's and is subtracted.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from typing import Any, Dict, Final, List, Optional, Tuple

import harness
from agents import MEMORY_LIMIT_MB
from report import Row, fmt

ARMS: Final = ("none", "official", "ours")
WORKERS: Final = 8
CHAIN: Final = 22


class TreeWalkers:
    """W threads that each round park at the bottom of a new random path, until the round ends."""

    def __init__(self, workers: int, rounds: int, seed: int = 11) -> None:
        import workloads

        self._steps = workloads.app_steps()
        self._run_chain = workloads.run_chain
        self._seed = hash((seed, 0x5EED)) & 0xFFFFFFFFFFFFFFFF  # ints hash the same in every process
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._condition = threading.Condition()
        self._parked = 0
        self._round = 0
        self._rounds = rounds
        self._threads = [threading.Thread(target=self._work, name=f"walker-{n}", daemon=True) for n in range(workers)]
        for thread in self._threads:
            thread.start()

    def _path(self) -> List[Any]:
        """A random walk down a fixed random tree: each node's 2-4 callees come from its hash.

        The tree is implicit, so the workload itself keeps no memory per path it has walked.
        """
        steps = len(self._steps)
        with self._lock:
            node = self._seed
            path = []
            for _ in range(CHAIN):
                pick = self._rng.randrange(2 + (node >> 3) % 3)
                index = (node >> (10 + 9 * pick)) % steps
                path.append(self._steps[index])
                node = hash((node, index)) & 0xFFFFFFFFFFFFFFFF
        return path

    def _work(self) -> None:
        for _ in range(self._rounds):
            self._run_chain(self._path(), self._park)

    def _park(self) -> None:
        with self._condition:
            this_round = self._round
            self._parked += 1
            self._condition.notify_all()
            while self._round == this_round:
                self._condition.wait()

    def round(self, action: Any) -> None:
        """Wait until every thread is parked on its new path, run ``action``, and release them."""
        with self._condition:
            while self._parked < len(self._threads):
                self._condition.wait()
            action()
            self._parked = 0
            self._round += 1
            self._condition.notify_all()


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    import agents
    import workloads

    warmup = 20
    walkers = TreeWalkers(args.workers, warmup + args.rounds)
    for _ in range(warmup):
        walkers.round(lambda: None)
    baseline_kib = workloads.rss_kib()
    if not workloads.reset_peak_rss():
        raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs)")
    ticker = None if args.agent == "none" else agents.make_ticker(args.agent, memory_limit_mb=args.limit_mb)
    tick = (lambda: None) if ticker is None else ticker.tick
    cpu0 = time.thread_time()
    stopped: Optional[str] = None
    for _ in range(args.rounds):
        try:
            walkers.round(tick)
        except Exception as error:  # the official agent raises once over its bound: note it, keep the workload going
            stopped, tick = f"{type(error).__name__}", (lambda: None)
    peak_kib = workloads.rss_kib("VmHWM")
    return {
        "added_peak_mb": (peak_kib - baseline_kib) / 1024,
        "agent_estimate_mb": None if ticker is None else ticker.memory_bytes() / 2**20,
        "thread_samples": args.rounds * args.workers,
        "tick_cpu_s": time.thread_time() - cpu0,
        "stopped": stopped,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agent", choices=ARMS, required=True)
    parser.add_argument("--rounds", type=int, default=2500)
    parser.add_argument("--workers", type=int, default=WORKERS)
    parser.add_argument("--limit-mb", type=float, default=MEMORY_LIMIT_MB)
    return parser


def suite(runs: int, rounds: int) -> Tuple[List[Row], Dict[str, Any]]:
    """Added peak RSS per agent (minus the workload's own), medians of ``runs`` processes."""
    outcomes: Dict[str, List[harness.Outcome]] = {arm: [] for arm in ARMS}
    for run, arm in harness.alternate(ARMS, runs):
        harness.log(f"  memory: {arm} run {run + 1}/{runs}")
        outcomes[arm].append(harness.run_child("memory.py", ["--agent", arm, "--rounds", str(rounds)], timeout_s=300))
    peak = {arm: harness.median(harness.collect(outcomes[arm], "added_peak_mb")) for arm in ARMS}
    errors = {arm: harness.first_error(outcomes[arm]) for arm in ARMS}
    workload = peak["none"] or 0.0
    added: Dict[str, Optional[float]] = {}
    for arm in ("official", "ours"):
        value = peak[arm]
        added[arm] = None if value is None else max(0.0, value - workload)
    estimate = harness.median(harness.collect(outcomes["ours"], "agent_estimate_mb"))
    stopped = next((o.value.get("stopped") for o in outcomes["official"] if o.ok and o.value.get("stopped")), None)
    official, ours = added["official"], added["ours"]
    limit = MEMORY_LIMIT_MB
    met = None if ours is None else ours <= limit and (official is None or ours < official)
    note = (
        f"{rounds * WORKERS:,} thread-samples, nearly all on new stacks, in one interval; workload's own growth "
        f"{workload:.1f} MB subtracted; our own estimate {fmt(estimate, 'MB')}"
    )
    if stopped:
        note += f"; the official agent stopped with {stopped}"
    row = Row(
        measure="memory: added peak RSS, many distinct stacks",
        official=fmt(official, "MB", errors["official"]),
        ours=fmt(ours, "MB", errors["ours"]),
        ratio="n/a" if not official or ours is None else f"{ours / official:.3f}",
        target=f"<= {limit:g} MB bound and < official",
        met=met,
        note=note,
    )
    return [row], {arm: [o.value or o.error for o in outcomes[arm]] for arm in ARMS}


if __name__ == "__main__":
    harness.child_main(measure, _parser())
