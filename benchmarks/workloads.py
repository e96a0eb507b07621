"""The programs the agents profile: parked threads, busy threads, a CPU-bound main thread.

The call chains run through a generated application package (``benchapp``) written to disk and
imported like any other code, so the agents see real files, modules, classes and methods, and
every agent resolves the same names. Nothing here imports an agent.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Final, List, Optional, Sequence

GEN_DIR: Final = Path(__file__).resolve().parent / "out" / "gen"
DOMAINS: Final = ("orders", "payments", "inventory", "users", "shipping", "catalog", "billing", "search")
LAYERS: Final = ("api", "service", "repository", "validators", "serializers", "middleware", "tasks", "models")
VERBS: Final = ("handle", "validate", "load", "save", "compute", "dispatch", "render", "fetch")
BOOTSTRAP_FRAMES: Final = 3
"""threading's own frames under every thread's target: _bootstrap, _bootstrap_inner, run."""

Step = Callable[..., object]

_METHOD_TEMPLATE: Final = '''
    def {verb}_{n}(self, path, i, leaf):
        """Pass the request on to the next step of the chain, or do the leaf's work."""
        if i < len(path):
            return path[i](path, i + 1, leaf)
        return leaf()
'''


def ensure_app() -> None:
    """Write the generated package once; safe to call from every process (atomic renames)."""
    root = GEN_DIR / "benchapp"
    if (root / "__init__.py").exists():
        return
    for domain in DOMAINS:
        package = root / domain
        package.mkdir(parents=True, exist_ok=True)
        _write(package / "__init__.py", "")
        for layer in LAYERS:
            class_name = domain.capitalize() + layer.capitalize()
            methods = "".join(_METHOD_TEMPLATE.format(verb=verb, n=n) for n, verb in enumerate(VERBS))
            _write(package / f"{layer}.py", f"class {class_name}:\n{methods}")
    _write(root / "__init__.py", '"""A generated application for the benchmarks."""\n')


def _write(path: Path, text: str) -> None:
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def app_steps() -> List[Step]:
    """Every generated method, bound, in a fixed order: 512 distinct code objects."""
    ensure_app()
    if str(GEN_DIR) not in sys.path:
        sys.path.insert(0, str(GEN_DIR))
    import importlib

    steps: List[Step] = []
    for domain in DOMAINS:
        for layer in LAYERS:
            module = importlib.import_module(f"benchapp.{domain}.{layer}")
            instance = getattr(module, domain.capitalize() + layer.capitalize())()
            steps.extend(getattr(instance, f"{verb}_{n}") for n, verb in enumerate(VERBS))
    return steps


def chain(steps: Sequence[Step], length: int, rng: random.Random) -> List[Step]:
    """A random call chain of ``length`` generated steps."""
    return [rng.choice(steps) for _ in range(length)]


def run_chain(path: Sequence[Step], leaf: Callable[[], object]) -> object:
    """Call down ``path`` (one frame per step) and run ``leaf`` at the bottom."""
    if not path:
        return leaf()
    return path[0](path, 1, leaf)


class ParkedThreads:
    """T threads blocked ``depth`` frames deep until closed: they use no CPU and never move."""

    def __init__(self, count: int, depth: int, seed: int = 1) -> None:
        steps = app_steps()
        rng = random.Random(seed)
        self._release = threading.Event()
        self._ready = threading.Semaphore(0)
        # threading's bootstrap, _park, run_chain, leaf, Event.wait and Condition.wait: 8 frames.
        length = max(1, depth - BOOTSTRAP_FRAMES - 5)
        self._threads = [
            threading.Thread(target=self._park, args=(chain(steps, length, rng),), name=f"parked-{n}", daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()
        for _ in self._threads:
            self._ready.acquire()

    def _park(self, path: List[Step]) -> None:
        def leaf() -> None:
            self._ready.release()
            self._release.wait()

        run_chain(path, leaf)

    def close(self) -> None:
        self._release.set()
        for thread in self._threads:
            thread.join(timeout=5)


class BusyThreads:
    """T threads each looping through fresh random call chains with a short CPU loop at the end.

    ``progress[n]`` counts thread n's finished chains, so a sampler can wait until every thread
    has moved to another stack before it samples again.
    """

    def __init__(self, count: int, depth: int, seed: int = 2, spin: int = 200, pause_s: float = 0.0) -> None:
        self._steps = app_steps()
        self._stop = threading.Event()
        self._spin = spin
        self._pause_s = pause_s
        self._depth = depth
        self.progress: List[int] = [0] * count
        self._threads = [
            threading.Thread(target=self._loop, args=(n, seed + n), name=f"busy-{n}", daemon=True) for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def _loop(self, index: int, seed: int) -> None:
        rng = random.Random(seed)
        length = max(1, self._depth - BOOTSTRAP_FRAMES - 4)  # + _loop, run_chain, lambda, spin_then_yield
        spin, pause_s = self._spin, self._pause_s
        progress = self.progress
        while not self._stop.is_set():
            run_chain(chain(self._steps, rng.randint(length // 2, length), rng), lambda: spin_then_yield(spin, pause_s))
            progress[index] += 1

    @property
    def native_ids(self) -> List[int]:
        return [thread.native_id or 0 for thread in self._threads]

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)


class FloorSampler:
    """The least any sampler written in Python does per sample, and nothing more: the floor.

    A thread that wakes on a sampler's schedule (every ``interval_s``, deadlines kept, never
    bursting), takes the GIL on waking as any Python code must, and runs ``work`` (none, or
    ``sys._current_frames``, which is how a Python sampler sees other threads), keeping nothing.
    Its CPU is what an agent pays before it walks or counts anything.
    """

    def __init__(self, interval_s: float, work: Optional[Callable[[], object]] = None) -> None:
        self.wakeups = 0
        self._interval_s = interval_s
        self._work = work
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="floor-sampler", daemon=True)
        self._thread.start()

    @property
    def ident(self) -> Optional[int]:
        return self._thread.ident

    def _loop(self) -> None:
        clock, interval_s, work = time.monotonic, self._interval_s, self._work
        next_wake = clock() + interval_s
        while not self._stop.is_set():
            wait_s = next_wake - clock()
            if wait_s > 0:
                time.sleep(wait_s)  # wakes holding the GIL again, as every Python thread does
            if work is not None:
                work()  # its result (the frames, say) is dropped at once, not kept to the next wake
            self.wakeups += 1
            next_wake = max(next_wake + interval_s, clock())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def spin_then_yield(n: int, pause_s: float = 0.0) -> int:
    """CPU work, then hand the GIL on (or sleep ``pause_s``) from the bottom of the chain, where a
    sample will find it."""
    total = spin_loop(n)
    time.sleep(pause_s)
    return total


def spin_loop(n: int) -> int:
    """A short pure-Python CPU loop."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


WORK_ITERATIONS: Final = 160_000
"""About 1.6 s of CPU-bound work on the reference machine (an AMD EPYC core, Python 3.11)."""


def cpu_work(iterations: int = WORK_ITERATIONS) -> int:
    """The CPU-bound main-thread workload; its hottest frame is :func:`hot_checksum`."""
    total = 0
    for i in range(iterations):
        total = (total + checksum_batch(i)) & 0xFFFFFFFF
    return total


def checksum_batch(seed: int) -> int:
    """One unit of work: mostly the hot loop, some dict work around it."""
    words: Dict[int, int] = {}
    for k in range(8):
        words[k] = (seed * 31 + k) & 0xFFFF
    return hot_checksum(words, seed)


def hot_checksum(words: Dict[int, int], seed: int) -> int:
    """The hot frame: a tight arithmetic loop."""
    acc = seed
    for _ in range(10):
        for value in words.values():
            acc = (acc * 1_000_003 ^ value) & 0xFFFFFFFF
    return acc


def thread_cpu_ns_except_main(main_tid: Optional[int] = None, others: Sequence[int] = ()) -> int:
    """CPU time (ns) of every thread of this process but the main one, from the kernel's schedstat.

    Threads started by native code (ddtrace's and pyroscope's samplers) are tasks like any other,
    so this counts every agent's own work the same way. ``others``: threads of the workload to leave
    out too.
    """
    main = main_tid if main_tid is not None else threading.main_thread().native_id
    total = 0
    for task in os.listdir("/proc/self/task"):
        if int(task) == main or int(task) in others:
            continue
        try:
            with open(f"/proc/self/task/{task}/schedstat") as handle:
                total += int(handle.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the task ended between listdir and open
    return total


def main_thread_schedstat() -> tuple[int, int]:
    """(ns on a CPU, ns waiting for a CPU) of the main thread, from the kernel's schedstat.

    Time spent waiting for a CPU comes from other processes on a shared machine (or any thread
    outnumbering the cores); time blocked on the GIL is neither, so it stays in the work's time.
    """
    with open(f"/proc/self/task/{threading.main_thread().native_id}/schedstat") as handle:
        fields = handle.read().split()
    return int(fields[0]), int(fields[1])


def rss_kib(field: str = "VmRSS") -> int:
    """A memory figure of this process from /proc/self/status, in KiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux 4.0+), so a later peak belongs to what ran since."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False
