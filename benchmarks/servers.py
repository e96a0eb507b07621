"""Real servers under a real load generator: what each agent costs a web service, and what it shows.

Three servers run the same two endpoints (``server_app.py``): a Flask app under gunicorn with two
sync workers, the same under gunicorn with two gevent workers, and a Starlette app under uvicorn
(one process, asyncio). ``wrk`` drives each on 127.0.0.1 with a fixed mix, ``/cpu`` and ``/wait``
in turn, from 8 connections, for a fixed time and at most a fixed number of requests. The arms:
no agent; the official agent at its default settings, started in each worker as its documentation
says; ours at default settings and ours at 100 samples/s with the budget lifted, both started by
its launcher (``python -m codeguru_agent -p GROUP -m gunicorn ...``), which profiles every forked
worker. The CodeGuru agents report to our collector, every 5 s and when the worker exits.

Per server and arm: requests/s, p50 and p99 latency (wrk); CPU per request (all the server's
processes, master included, over the load) and the agent threads' CPU (all threads but each
process's main one, where these servers run their requests), both read from the kernel's schedstat
before and after the load; how many workers delivered profiles (the collector's); and each
endpoint's share of the samples against its share of the time, from the stored profiles and the
handlers' own timings:

- sync workers (one request at a time per worker): the samples under the endpoint's handler frame
  over the ticks taken, against the handlers' summed durations over the workers' lifetimes;
- gevent and asyncio (many requests at once on one thread), two measures. Wait side: the samples
  under the endpoint's handler frame, the thread's and the suspended greenlets' or tasks' alike,
  over the samples under either handler, against the endpoint's share of the summed request
  latency (its handlers' summed durations over both endpoints'). A greenlet or task sample stands
  for one interval of that request's wall time, so both sides say how much of the requests' time
  in flight each endpoint holds; a sampler of threads sees only the request that runs. CPU side:
  the loop thread's own samples under the handler (greenlet and task samples left out: a path
  rooted at ``<greenlet ...>`` or ending in ``<await ...>``) over the ticks, against the handler's
  CPU time (its thread's CPU over its own steps, not across its wait) over the workers' lifetimes:
  how often the thread was found running the endpoint against how much of its time it ran it.

Every sample counts for its profile's sampled time over its ticks (``durationInMs`` over
``numTimesSampled``), as the profile's own ``sampleWeights`` say: an agent held to its budget
samples an idle worker more often than a loaded one, and counted alike, the idle time would weigh
several times over. Ours also weighs each tick by the configured intervals it stands for, within
a profile (its ``numTimesSampled`` is in those units; its ``ticks`` metric, the ticks taken).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Final, List, Optional, Tuple

import harness
from report import Row, Table, fmt

SERVERS: Final[Dict[str, Tuple[List[str], int]]] = {
    "gunicorn sync": (["-m", "gunicorn", "-w", "2", "-k", "sync", "server_app:flask_app"], 2),
    "gunicorn gevent": (["-m", "gunicorn", "-w", "2", "-k", "gevent", "server_app:flask_app"], 2),
    "uvicorn asyncio": (["-m", "uvicorn", "server_app:starlette_app", "--log-level", "warning"], 1),
}
"""Server: (its command after the interpreter, without the socket; its worker processes)."""
ASYNC_SERVERS: Final = frozenset({"gunicorn gevent", "uvicorn asyncio"})
"""Servers whose worker runs many requests at once on one thread (greenlets, asyncio tasks)."""
ARMS: Final = ("none", "official", "ours-default", "ours-100")
ENDPOINTS: Final = ("cpu", "wait")
CONNECTIONS: Final = 8
MAX_REQUESTS: Final = 20_000
SHARE_POINTS: Final = 5.0
"""Issue 15's target: an endpoint's share of the samples within 5 points of its share of the time."""
STARTUP_TIMEOUT_S: Final = 40.0
STOP_TIMEOUT_S: Final = 20.0


def suite(runs: int, load_s: float) -> Tuple[List[Row], List[Table], Dict[str, Any]]:
    """Every server under every arm, ``runs`` times each, alternating; medians per server and arm."""
    wrk = shutil.which("wrk")
    if wrk is None:
        why = "wrk is not installed (apt-get install -y wrk)"
        return [Row(f"servers: {name}", "n/a", f"n/a ({why})") for name in SERVERS], [], {"error": why}
    names = [f"{server}|{arm}" for server in SERVERS for arm in ARMS]
    results: Dict[str, List[Dict[str, Any]]] = {name: [] for name in names}
    with harness.codeguru_endpoint() as collector:
        database = harness.OUT_DIR / f"collector-{os.getpid()}.db"
        for run, name in harness.alternate(names, runs):
            server, arm = name.split("|")
            harness.log(f"  servers: {server}, {arm}, run {run + 1}/{runs}")
            group = re.sub(r"[^A-Za-z0-9_-]", "-", f"bench-{server}-{arm}-{run}")
            try:
                figures = _one(wrk, server, arm, group, collector.url, load_s)
                figures.update(_profiles(database, group, figures.get("master_pid"), SERVERS[server][1] > 1))
            except Exception as error:  # one server's failure must not cost the others' figures
                figures = {"error": f"{type(error).__name__}: {error}"}
            results[name].append(figures)
    return _rows(results), [_table(results, runs, load_s)], {"runs": results}


def _one(wrk: str, server: str, arm: str, group: str, url: str, load_s: float) -> Dict[str, Any]:
    """Start the server on a socket of ours, load it with wrk, stop it, and read its workers' figures."""
    command, _ = SERVERS[server]
    listener = socket.socket()
    # Accepted connections inherit it on Linux; uvicorn takes an inherited socket for a Unix one and
    # would leave Nagle's algorithm on, each answer then waiting 40 ms for a delayed ACK.
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    bind = ["-b", f"fd://{fd}", "--graceful-timeout", "5"] if "gunicorn" in command else ["--fd", str(fd)]
    stats_dir = tempfile.mkdtemp(prefix="bench-stats-", dir=harness.OUT_DIR)
    env = dict(os.environ, **harness.DUMMY_AWS_ENV)
    env.update(BENCH_STATS_DIR=stats_dir, BENCH_GROUP=group, BENCH_ENDPOINT=url, PYTHONDONTWRITEBYTECODE="1")
    prefix = [harness.python()]
    if arm == "official":
        env["BENCH_AGENT"] = "official"
    elif arm.startswith("ours"):
        prefix += ["-m", "codeguru_agent", "-p", group]
        env.update(AWS_ENDPOINT_URL_CODEGURUPROFILER=url, AWS_CODEGURU_PROFILER_REPORTING_INTERVAL_MS="5000")
        if arm == "ours-100":
            env["AWS_CODEGURU_PROFILER_CPU_LIMIT_PERCENT"] = "100"  # the default interval is 10 ms: 100/s
    process = subprocess.Popen(
        prefix + command + bind,
        cwd=harness.HERE,
        env=env,
        pass_fds=(fd,),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    listener.close()
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, process)
        time.sleep(1.0)  # the agents' start-up work, out of the measured load
        before = _cpu(process.pid)
        done = subprocess.run(
            [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{load_s:g}s", "--timeout", "5s", "--latency", "-s", "mix.lua", base],
            cwd=harness.HERE,
            env=dict(os.environ, BENCH_MAX_REQUESTS=str(MAX_REQUESTS)),
            capture_output=True,
            text=True,
            timeout=load_s + 30,
        )
        load = _parse_wrk(done.stdout)
        after = _cpu(process.pid)
        load["server_cpu_s"] = sum(after[pid][0] - before.get(pid, (0, 0))[0] for pid in after)
        load["agent_cpu_s"] = sum(after[pid][1] - before.get(pid, (0, 0))[1] for pid in after)
        load["load_wall_s"] = load_s
    finally:
        _stop(process)
    workers = []
    for path in Path(stats_dir).glob("*.json"):
        workers.append(json.loads(path.read_text()))
    shutil.rmtree(stats_dir, ignore_errors=True)
    if not workers:
        tail = (process.stderr.read() if process.stderr else "")[-300:]
        raise RuntimeError(f"no worker wrote its figures (exit {process.returncode}): {tail}")
    return {**load, "workers": workers, "master_pid": process.pid}


def _cpu(master: int) -> Dict[int, Tuple[float, float]]:
    """Per process of the server (the master and its workers): the CPU of all its threads, and of
    all but its main one (the agent's: these servers run requests on the main thread), from the
    kernel's schedstat, so that native and Python threads count alike."""
    import psutil

    try:
        pids = [master] + [child.pid for child in psutil.Process(master).children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    figures = {}
    for pid in pids:
        total = others = 0
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                    ns = int(handle.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            total += ns
            if int(task) != pid:
                others += ns
        figures[pid] = (total / 1e9, others / 1e9)
    return figures


def _wait_ready(base: str, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server ended at start (exit {process.returncode})")
        try:
            with urllib.request.urlopen(base + "/wait", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"no answer from the server in {STARTUP_TIMEOUT_S:.0f} s")


def _stop(process: subprocess.Popen[str]) -> None:
    """SIGTERM, as a service manager stops a server (the workers finish, the agents flush), then a kill."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the master and its workers: a session of their own
            process.wait()


_UNITS: Final = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def _seconds(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def _parse_wrk(output: str) -> Dict[str, Any]:
    """Requests/s, p50 and p99 and the error counts from wrk's report."""
    figures: Dict[str, Any] = {}
    for percentile, value in re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.M):
        figures[f"p{percentile}_s"] = _seconds(value)
    match = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if match is None:
        raise RuntimeError(f"wrk said: {output.strip()[-200:]}")
    figures["rps"] = float(match.group(1))
    match = re.search(r"(\d+) requests in", output)
    figures["requests"] = int(match.group(1)) if match else None
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    figures["bad_responses"] = int(match.group(1)) if match else 0
    match = re.search(r"Socket errors: (.*)$", output, re.M)
    figures["socket_errors"] = match.group(1) if match else ""
    return figures


def _profiles(database: Path, group: str, master_pid: Optional[int], has_master: bool) -> Dict[str, Any]:
    """From the collector's store: the workers that delivered profiles, ticks, and samples per endpoint."""
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10) as db:
        documents = [
            json.loads(row[0]) for row in db.execute("SELECT document FROM profiles WHERE group_name = ?", (group,))
        ]
    sources = set()
    ticks = 0
    ticks_s = 0.0
    samples = {endpoint: 0.0 for endpoint in ENDPOINTS}
    thread_samples = {endpoint: 0.0 for endpoint in ENDPOINTS}
    for document in documents:
        source = _source(document)
        if has_master and source == master_pid:
            continue  # the gunicorn master our launcher also profiles: it serves no request
        sources.add(source)
        metadata = document.get("agentMetadata", {})
        taken = int(metadata.get("numTimesSampled") or 0)
        if not taken:
            continue
        # Each sample stands for its profile's time over its ticks: an agent whose budget samples an
        # idle worker every 10 ms and a loaded one every 60 ms would otherwise count the idle
        # time six times over. Shares are of sampled time, as the profile's own sampleWeights say.
        seconds_per_tick = float(metadata.get("durationInMs") or 0) / 1000.0 / taken
        # ours counts in configured intervals (a tick the budget spaced out weighs several) and
        # says how many ticks it took; the official agent's numTimesSampled is its ticks
        ticks += int((document.get("debugInfo") or {}).get("genericMetrics", {}).get("ticks", taken))
        ticks_s += taken * seconds_per_tick
        for endpoint, (count, on_thread) in _endpoint_samples(document.get("callgraph", {})).items():
            samples[endpoint] += count * seconds_per_tick
            thread_samples[endpoint] += on_thread * seconds_per_tick
    return {
        "profiles": len(documents),
        "delivered": len(sources),
        "ticks": ticks,
        "ticks_s": ticks_s,
        "samples": samples,
        "thread_samples": thread_samples,
    }


def _source(document: Dict[str, Any]) -> Any:
    """Which process sent a profile: its process id, or (the official agent) its start time and fleet id."""
    debug = document.get("debugInfo") or {}
    if "processId" in debug:
        return debug["processId"]
    metadata = document.get("agentMetadata") or {}
    return json.dumps([metadata.get("fleetInfo"), debug.get("agentStartTime")], sort_keys=True)


def _endpoint_samples(root: Dict[str, Any]) -> Dict[str, Tuple[int, int]]:
    """Per endpoint: the samples under its handler frame (a name ending in ``cpu_endpoint``,
    ``wait_endpoint``), and those of them that are the thread's own (not a suspended greenlet's,
    whose path begins at ``<greenlet ...>``, nor a suspended task's, whose leaf is ``<await ...>``)."""
    totals = {endpoint: [0, 0] for endpoint in ENDPOINTS}
    pending: List[Tuple[str, Dict[str, Any], Optional[str], bool]] = [("", root, None, False)]
    while pending:
        name, node, endpoint, in_greenlet = pending.pop()
        if endpoint is not None:
            count = sum(int(v) for v in (node.get("counts") or {}).values())
            totals[endpoint][0] += count
            if not in_greenlet and not name.startswith("<await "):
                totals[endpoint][1] += count
        for child_name, child in (node.get("children") or {}).items():
            below = endpoint
            if below is None:
                below = next((e for e in ENDPOINTS if child_name.endswith(f"{e}_endpoint")), None)
            greenlet = in_greenlet or (node is root and child_name.startswith("<greenlet "))
            pending.append((child_name, child, below, greenlet))
    return {endpoint: (all_, own) for endpoint, (all_, own) in totals.items()}


def _summary(runs: List[Dict[str, Any]], workers: int, overlapping: bool = False) -> Dict[str, Any]:
    """Medians over the runs that worked, and the per-endpoint shares over all of them."""
    ok = [run for run in runs if "error" not in run]
    if not ok:
        return {"error": runs[0].get("error") if runs else "no run"}
    figures: Dict[str, Any] = {"runs_ok": len(ok), "runs": len(runs)}
    for key in ("rps", "p50_s", "p99_s"):
        figures[key] = harness.median(run.get(key) for run in ok)
    figures["cpu_per_request_s"] = harness.median(
        run["server_cpu_s"] / run["requests"] for run in ok if run["requests"]
    )
    figures["agent_cpu_s"] = harness.median(run["agent_cpu_s"] for run in ok)
    figures["agent_cpu_share"] = harness.median(run["agent_cpu_s"] / run["load_wall_s"] for run in ok)
    figures["delivered"] = min(run.get("delivered", 0) for run in ok)
    figures["workers"] = workers
    figures["errors"] = sum(run.get("bad_responses", 0) for run in ok)
    ticks = sum(run.get("ticks", 0) for run in ok)
    ticks_s = sum(run.get("ticks_s", 0.0) for run in ok)
    alive = sum(w["alive_s"] for run in ok for w in run["workers"])

    def total(what: str, endpoint: str) -> float:
        return sum(w["endpoints"][endpoint].get(what, 0.0) for run in ok for w in run["workers"])

    def sampled(what: str, endpoint: str) -> float:
        return sum(run.get(what, {}).get(endpoint, 0.0) for run in ok)

    shares, cpu_shares = {}, {}
    latency = sum(total("handler_s", e) for e in ENDPOINTS)
    in_handlers = sum(sampled("samples", e) for e in ENDPOINTS)
    for endpoint in ENDPOINTS:
        if overlapping:  # the wait side: shares among the two handlers (see the module's note)
            shares[endpoint] = (
                _percent(sampled("samples", endpoint), in_handlers),
                _percent(total("handler_s", endpoint), latency),
            )
            cpu_shares[endpoint] = (
                _percent(sampled("thread_samples", endpoint), ticks_s),
                _percent(total("handler_cpu_s", endpoint), alive),
            )
        else:
            shares[endpoint] = (
                _percent(sampled("samples", endpoint), ticks_s),
                _percent(total("handler_s", endpoint), alive),
            )
    figures["shares"] = shares
    figures["cpu_shares"] = cpu_shares
    figures["ticks"] = ticks
    return figures


def _percent(part: float, whole: float) -> Optional[float]:
    return 100.0 * part / whole if whole else None


def _share_text(shares: Dict[str, Tuple[Optional[float], Optional[float]]]) -> str:
    parts = []
    for endpoint, (sampled, timed) in shares.items():
        if sampled is None or timed is None:
            parts.append(f"{endpoint} n/a")
        else:
            parts.append(f"{endpoint} {sampled:.0f}% of samples / {timed:.0f}% of time")
    return ", ".join(parts)


def _share_gap(shares: Dict[str, Tuple[Optional[float], Optional[float]]]) -> Optional[float]:
    gaps = [abs(s - t) for s, t in shares.values() if s is not None and t is not None]
    return max(gaps) if len(gaps) == len(shares) else None


def _rows(results: Dict[str, List[Dict[str, Any]]]) -> List[Row]:
    """Per server: ours at default against no agent and the official agent, and the shares' verdict."""
    rows = []
    for server in SERVERS:
        overlapping = server in ASYNC_SERVERS
        summary = {arm: _summary(results[f"{server}|{arm}"], SERVERS[server][1], overlapping) for arm in ARMS}
        none, official, ours = (summary.get(arm, {"error": "not run"}) for arm in ("none", "official", "ours-default"))
        throughput = _ratio(ours.get("rps"), none.get("rps"))
        rows.append(
            Row(
                measure=f"{server}: requests/s with the agent at default settings (no agent {fmt(none.get('rps'))})",
                official=_with_error(fmt(official.get("rps")), official),
                ours=_with_error(fmt(ours.get("rps")), ours),
                ratio="n/a" if throughput is None else f"{throughput:.3f} of no agent",
                target="(for reference)",
                verdict="-",
                note=_server_note(summary),
            )
        )
        measures = [("shares", "each endpoint's share of samples vs of time")]
        if overlapping:
            measures = [
                ("shares", "each endpoint's share of the samples under the handlers vs of the summed request latency"),
                ("cpu_shares", "each endpoint's share of the loop thread's samples vs of its CPU time in the handler"),
            ]
        for key, what in measures:
            for arm, label in (("ours-default", "default settings"), ("ours-100", "100/s")):
                rows.append(_share_row(f"{server}: {what}, ours at {label}", key, summary.get(arm, {}), official))
    return rows


def _share_row(measure: str, key: str, figures: Dict[str, Any], official: Dict[str, Any]) -> Row:
    figures = figures or {"error": "not run"}
    gap = _share_gap(figures.get(key, {})) if "error" not in figures else None
    official_gap = _share_gap(official.get(key, {})) if "error" not in official else None
    return Row(
        measure=measure,
        official=_with_error("n/a" if official_gap is None else f"off by {official_gap:.0f} points", official),
        ours=_with_error("n/a" if gap is None else f"off by {gap:.0f} points", figures),
        target=f"<= {SHARE_POINTS:g} points",
        met=None if gap is None else gap <= SHARE_POINTS,
        note=f"ours: {_share_text(figures.get(key, {}))}; official: {_share_text(official.get(key, {}))}",
    )


def _ratio(value: Optional[float], base: Optional[float]) -> Optional[float]:
    return value / base if value is not None and base else None


def _with_error(text: str, figures: Dict[str, Any]) -> str:
    return f"n/a ({figures['error']})" if "error" in figures else text


def _server_note(summary: Dict[str, Dict[str, Any]]) -> str:
    parts = []
    for arm in ARMS:
        figures = summary[arm]
        if "error" in figures:
            parts.append(f"{arm}: n/a ({figures['error']})")
            continue
        parts.append(
            f"{arm}: p99 {fmt(_ms(figures['p99_s']), 'ms')}, "
            f"CPU/request {fmt(_ms(figures['cpu_per_request_s']), 'ms')}, "
            f"agent threads {fmt(figures['agent_cpu_s'], 's')}, "
            f"profiles from {figures['delivered']}/{figures['workers']} workers"
        )
    return "; ".join(parts)


def _ms(seconds: Optional[float]) -> Optional[float]:
    return None if seconds is None else seconds * 1000


def _table(results: Dict[str, List[Dict[str, Any]]], runs: int, load_s: float) -> Table:
    table = Table(
        title=f"Real servers: /cpu and /wait in turn from {CONNECTIONS} connections (wrk, {load_s:g} s, at most "
        f"{MAX_REQUESTS:,} requests), medians of {runs} runs; the shares over all runs",
        headers=(
            "server",
            "agent",
            "requests/s",
            "p50",
            "p99",
            "CPU per request",
            "agent threads' CPU during the load (share of one core)",
            "workers that delivered profiles",
            "samples taken",
            "/cpu: share of samples / of time",
            "/wait: share of samples / of time",
            "loop thread, /cpu and /wait: share of its samples / of its CPU time",
            "runs ok",
        ),
    )
    for server in SERVERS:
        for arm in ARMS:
            figures = _summary(results[f"{server}|{arm}"], SERVERS[server][1], server in ASYNC_SERVERS)
            if "error" in figures:
                table.rows.append([server, arm, f"n/a ({figures['error']})"] + [""] * 10)
                continue
            cpu_shares = figures["cpu_shares"]
            shares = figures["shares"]
            profiled = arm != "none"
            table.rows.append(
                [
                    server,
                    arm,
                    fmt(figures["rps"]),
                    fmt(_ms(figures["p50_s"]), "ms"),
                    fmt(_ms(figures["p99_s"]), "ms"),
                    fmt(_ms(figures["cpu_per_request_s"]), "ms"),
                    f"{fmt(figures['agent_cpu_s'], 's')} ({figures['agent_cpu_share']:.2%})",
                    f"{figures['delivered']}/{figures['workers']}" if profiled else "-",
                    fmt(figures["ticks"]) if profiled else "-",
                    _pair(shares["cpu"]) if profiled else "-",
                    _pair(shares["wait"]) if profiled else "-",
                    f"{_pair(cpu_shares['cpu'])}, {_pair(cpu_shares['wait'])}" if profiled and cpu_shares else "-",
                    f"{figures['runs_ok']}/{figures['runs']}",
                ]
            )
    return table


def _pair(share: Tuple[Optional[float], Optional[float]]) -> str:
    sampled, timed = share
    if sampled is None or timed is None:
        return "n/a"
    return f"{sampled:.0f}% / {timed:.0f}%"
