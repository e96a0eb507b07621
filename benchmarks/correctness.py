"""The check behind every figure: both agents see the same hot function in the same program.

One process runs the CPU-bound workload on its main thread while a sampler thread ticks both
agents one after the other every 5 ms, so they sample the very same moments; their hottest
self-time functions (by name and file) must be the same.
"""

from __future__ import annotations

import argparse
import threading
from typing import Any, Dict, Final, List, Tuple

import harness
from report import Row

ARMS: Final = ("official", "ours")


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    import agents
    import workloads

    tops: Dict[str, Any] = {}
    errors: Dict[str, str] = {}
    ready, stop = threading.Event(), threading.Event()

    def sample() -> None:
        tickers = {}
        for name in ARMS:  # built on this thread, so each agent excludes it as its own
            try:
                tickers[name] = agents.make_ticker(name)
            except Exception as error:  # one agent missing must not hide the other's answer
                errors[name] = f"{type(error).__name__}: {error}"
        ready.set()
        while not stop.wait(0.005):
            for ticker in tickers.values():
                ticker.tick()
        tops.update({name: ticker.top_self_frames(3) for name, ticker in tickers.items()})

    thread = threading.Thread(target=sample, name="bench-sampler")
    thread.start()
    ready.wait()
    workloads.cpu_work(args.iterations)
    stop.set()
    thread.join()
    return {"top": tops, "errors": errors}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=60_000)
    return parser


def suite() -> Tuple[List[Row], Dict[str, Any]]:
    harness.log("  correctness: hot frames of both agents")
    outcome = harness.run_child("correctness.py", [], timeout_s=120)
    if not outcome.ok:
        return [Row("hot frame agrees (same program, same moments)", "n/a", "n/a", note=str(outcome.error))], {}
    top: Dict[str, List[Tuple[str, str, int]]] = outcome.value["top"]
    errors: Dict[str, str] = outcome.value["errors"]

    def describe(name: str) -> str:
        if name in errors:
            return f"n/a ({errors[name]})"
        frames = top.get(name) or []
        if not frames:
            return "no samples"
        total = sum(n for _, _, n in frames)
        function, path, count = frames[0]
        return f"{function} ({path.rsplit('/', 1)[-1]}, {count}/{total} of top 3)"

    agree = None
    if top.get("official") and top.get("ours"):
        agree = tuple(top["official"][0][:2]) == tuple(top["ours"][0][:2])
    row = Row(
        "hot frame agrees (same program, same moments)",
        describe("official"),
        describe("ours"),
        target="same function",
        met=agree,
    )
    return [row], outcome.value


if __name__ == "__main__":
    harness.child_main(measure, _parser())
