"""Measurement 5: bytes and encode time of one profile, as the official JSON, our JSON and our Ion.

The profile is built the same way in every process from a fixed seed, with the shape of a web
service's five-minute profile: threading's bootstrap, a WSGI server and framework, then call chains
through the application and into libraries, about 2,000 call-graph nodes and about 30 frames deep,
with real-looking file paths. Each encoder starts from its own agent's in-memory profile (the
official ``Profile`` call tree, our sealed ``Profile`` of flat stacks), so the time includes
everything between the sealed profile and the bytes on the wire.
"""

from __future__ import annotations

import argparse
import io
import random
import statistics
import time
from typing import Any, Dict, Final, List, Optional, Sequence, Tuple

import harness
from report import Row, Table, fmt

SYS_PATH: Final = ("/usr/local/lib/python3.11", "/srv/app/.venv/lib/python3.11/site-packages", "/srv/app")
ARMS: Final = ("official", "ours-json", "ours-ion")
TARGET_NODES: Final = 2000
DURATION_MS: Final = 300_000

RawFrame = Tuple[str, Optional[str], str, int]
"""(function, class or None, file, line)."""

_STDLIB: Final = "/usr/local/lib/python3.11"
_SITE: Final = "/srv/app/.venv/lib/python3.11/site-packages"
BOOTSTRAP: Final[Sequence[RawFrame]] = (
    ("_bootstrap", "Thread", f"{_STDLIB}/threading.py", 995),
    ("_bootstrap_inner", "Thread", f"{_STDLIB}/threading.py", 1038),
    ("run", "Thread", f"{_STDLIB}/threading.py", 975),
)
SERVER: Final[Sequence[RawFrame]] = (
    ("process_request_thread", "ThreadingMixIn", f"{_STDLIB}/socketserver.py", 691),
    ("finish_request", "BaseServer", f"{_STDLIB}/socketserver.py", 361),
    ("__init__", "BaseRequestHandler", f"{_STDLIB}/socketserver.py", 755),
    ("handle", "WSGIRequestHandler", f"{_SITE}/werkzeug/serving.py", 398),
    ("handle_one_request", "BaseHTTPRequestHandler", f"{_STDLIB}/http/server.py", 424),
    ("run_wsgi", "WSGIRequestHandler", f"{_SITE}/werkzeug/serving.py", 362),
    ("execute", "WSGIRequestHandler", f"{_SITE}/werkzeug/serving.py", 323),
    ("__call__", "Flask", f"{_SITE}/flask/app.py", 1498),
    ("wsgi_app", "Flask", f"{_SITE}/flask/app.py", 1473),
    ("full_dispatch_request", "Flask", f"{_SITE}/flask/app.py", 880),
    ("dispatch_request", "Flask", f"{_SITE}/flask/app.py", 865),
)
LIBRARY_LEAVES: Final[Sequence[Sequence[RawFrame]]] = (
    (
        ("dumps", None, f"{_STDLIB}/json/__init__.py", 231),
        ("encode", "JSONEncoder", f"{_STDLIB}/json/encoder.py", 200),
        ("iterencode", "JSONEncoder", f"{_STDLIB}/json/encoder.py", 258),
    ),
    (
        ("execute", "Session", f"{_SITE}/sqlalchemy/orm/session.py", 2262),
        ("_execute_internal", "Session", f"{_SITE}/sqlalchemy/orm/session.py", 2144),
        ("execute", "Connection", f"{_SITE}/sqlalchemy/engine/base.py", 1416),
        ("_execute_context", "Connection", f"{_SITE}/sqlalchemy/engine/base.py", 1846),
    ),
    (
        ("_api_call", "ClientCreator", f"{_SITE}/botocore/client.py", 565),
        ("_make_api_call", "BaseClient", f"{_SITE}/botocore/client.py", 1005),
        ("_make_request", "BaseClient", f"{_SITE}/botocore/client.py", 1029),
        ("make_request", "Endpoint", f"{_SITE}/botocore/endpoint.py", 119),
    ),
    (("render", "Template", f"{_SITE}/jinja2/environment.py", 1301), ("root", None, "<template>", 5)),
    (("search", "Pattern", f"{_STDLIB}/re/__init__.py", 176),),
    (("deepcopy", None, f"{_STDLIB}/copy.py", 128), ("_deepcopy_dict", None, f"{_STDLIB}/copy.py", 231)),
    (),
)


def _app_frames() -> List[RawFrame]:
    import workloads

    frames: List[RawFrame] = []
    for d, domain in enumerate(workloads.DOMAINS):
        for k, layer in enumerate(workloads.LAYERS):
            for n, verb in enumerate(workloads.VERBS):
                frames.append(
                    (
                        f"{verb}_{n}",
                        domain.capitalize() + layer.capitalize(),
                        f"/srv/app/{domain}/{layer}.py",
                        12 + 40 * n + d + k,
                    )
                )
    return frames


def realistic_stacks(seed: int = 7, target_nodes: int = TARGET_NODES) -> List[Tuple[List[RawFrame], int]]:
    """Root-first stacks with sample counts whose call tree has about ``target_nodes`` nodes."""
    rng = random.Random(seed)
    app = _app_frames()
    children: Dict[Tuple[str, ...], List[RawFrame]] = {}
    prefixes: set[Tuple[str, ...]] = set()
    stacks: List[Tuple[List[RawFrame], int]] = []
    while len(prefixes) < target_nodes:
        stack = list(BOOTSTRAP) + list(SERVER)
        path: Tuple[str, ...] = tuple(f"{f[2]}:{f[1]}:{f[0]}" for f in stack)
        for _ in range(rng.randint(8, 16)):  # through the application: a few callees per caller
            pool = children.setdefault(path, rng.sample(app, rng.randint(1, 4)))
            function, owner, file, line = rng.choice(pool)
            stack.append((function, owner, file, line + rng.choice((0, 0, 0, 1, 2))))
            path += (f"{file}:{owner}:{function}",)
        stack.extend(rng.choice(LIBRARY_LEAVES))
        for depth in range(1, len(stack) + 1):
            prefixes.add(tuple(f"{f[2]}:{f[1]}:{f[0]}" for f in stack[:depth]))
        stacks.append((stack, max(1, int(rng.paretovariate(1.2)))))
    return stacks


def module_of(file: str) -> str:
    """The module name both agents derive from a file under SYS_PATH."""
    for root in sorted(SYS_PATH, key=len, reverse=True):
        if file.startswith(root + "/"):
            return file[len(root) + 1 :].removesuffix(".py").replace("/", ".")
    return file


def official_encoder(stacks: List[Tuple[List[RawFrame], int]]) -> Any:
    """A function encoding the official agent's Profile holding these stacks with its ProfileEncoder."""
    from codeguru_profiler_agent.agent_metadata.agent_debug_info import AgentDebugInfo, ErrorsMetadata
    from codeguru_profiler_agent.agent_metadata.agent_metadata import AgentMetadata, DefaultFleetInfo
    from codeguru_profiler_agent.model.frame import Frame
    from codeguru_profiler_agent.model.profile import Profile
    from codeguru_profiler_agent.sdk_reporter.profile_encoder import ProfileEncoder

    now_ms = int(time.time() * 1000)
    start_ms = now_ms - DURATION_MS
    profile = Profile(
        profiling_group_name="bench",
        sampling_interval_seconds=0.01,
        host_weight=1,
        start=start_ms,
        agent_debug_info=AgentDebugInfo(ErrorsMetadata(), start_ms),
        clock=lambda: now_ms / 1000,
    )
    for stack, count in stacks:
        profile._insert_stack(
            [Frame(name, class_name=owner, line_no=line, file_path=file) for name, owner, file, line in stack],
            runnable_count_increase=count,
        )
    profile.total_sample_count = DURATION_MS // 10
    profile.total_seen_threads_count = profile.total_sample_count * 8
    profile.end = now_ms
    encoder = ProfileEncoder(
        environment={"agent_metadata": AgentMetadata(fleet_info=DefaultFleetInfo()), "sys_path": list(SYS_PATH)},
        gzip=False,
    )

    def encode() -> bytes:
        stream = io.BytesIO()
        encoder.encode(profile, stream)
        return stream.getvalue()

    return encode


def ours_encoder(stacks: List[Tuple[List[RawFrame], int]], profile_format: str) -> Any:
    """A function turning our sealed Profile holding these stacks into the bytes we would send."""
    import os

    from codeguru_agent.reporting.document import Frame, Profile, Provenance, build_document
    from codeguru_agent.reporting.encoding import encode

    flat: Dict[Tuple[Any, ...], int] = {}
    for stack, count in stacks:
        key = tuple(
            Frame(":".join(filter(None, (module_of(file), owner, name))), file, line)
            for name, owner, file, line in stack
        )
        flat[key] = flat.get(key, 0) + count
    now_ms = int(time.time() * 1000)
    profile = Profile(
        start_ms=now_ms - DURATION_MS,
        end_ms=now_ms,
        duration_ms=DURATION_MS,
        stacks=flat,
        num_times_sampled=DURATION_MS // 10,
        threads_seen=DURATION_MS // 10 * 8,
    )
    provenance = Provenance(
        fleet_info={"id": "3f2b8c1e-5a4d-4f8e-9b1a-2c7d6e0f9a8b", "type": "UNKNOWN", "vCPUs": 2},
        agent_version="0.1.0",
        agent_start_time="2025-01-01T00:00:00.000Z",
        process_id=os.getpid(),
    )

    def run() -> bytes:
        body: bytes = encode(build_document(profile, provenance), profile_format).body
        return body

    return run


def measure(args: argparse.Namespace) -> Dict[str, Any]:
    stacks = realistic_stacks()
    encode = official_encoder(stacks) if args.agent == "official" else ours_encoder(stacks, args.agent.split("-")[1])
    body = encode()
    times_ms = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        encode()
        times_ms.append((time.perf_counter() - started) * 1000)
    nodes, depth = _tree_shape(body, "ion" if args.agent == "ours-ion" else "json")
    return {"bytes": len(body), "ms": statistics.median(times_ms), "nodes": nodes, "depth": depth}


def _tree_shape(body: bytes, profile_format: str) -> Tuple[int, int]:
    """Call-graph nodes and depth of an encoded document, read back, as a check that all agree."""
    from codeguru_agent.reporting.document import walk_callgraph
    from codeguru_agent.reporting.encoding import decode

    document = decode(body, "application/x-amzn-ion" if profile_format == "ion" else "application/json")
    paths = [path for path, _ in walk_callgraph(document["callgraph"])]
    return len(paths), max(len(path) for path in paths)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agent", choices=ARMS, required=True)
    parser.add_argument("--repeats", type=int, default=15)
    return parser


def suite(runs: int) -> Tuple[List[Row], List[Table], Dict[str, Any]]:
    """Bytes (deterministic) and median encode time per encoding, alternating processes."""
    outcomes: Dict[str, List[harness.Outcome]] = {arm: [] for arm in ARMS}
    for run, arm in harness.alternate(ARMS, runs):
        harness.log(f"  encode: {arm} run {run + 1}/{runs}")
        outcomes[arm].append(harness.run_child("encode_size.py", ["--agent", arm], timeout_s=120))
    size = {arm: harness.median(harness.collect(outcomes[arm], "bytes")) for arm in ARMS}
    ms = {arm: harness.median(harness.collect(outcomes[arm], "ms")) for arm in ARMS}
    errors = {arm: harness.first_error(outcomes[arm]) for arm in ARMS}
    shape = {
        arm: next((f"{o.value['nodes']} nodes, depth {o.value['depth']}" for o in outcomes[arm] if o.ok), "n/a")
        for arm in ARMS
    }
    official = size["official"]
    rows = []
    for arm in ("ours-ion", "ours-json"):
        mine = size[arm]
        ratio = mine / official if official and mine is not None else None
        target = 0.4 if arm == "ours-ion" else None
        rows.append(
            Row(
                measure=f"profile bytes, official JSON vs our {arm.split('-')[1].upper()}",
                official=fmt(official, "B", errors["official"]),
                ours=fmt(size[arm], "B", errors[arm]),
                ratio="n/a" if ratio is None else f"{ratio:.3f}",
                target="<= 0.4" if target else "(no target)",
                met=None if ratio is None or target is None else ratio <= target,
            )
        )
    table = Table(
        title=f"Encoding one profile ({shape['official']}), medians of {runs} processes",
        headers=("encoding", "bytes", "encode time", "call graph read back"),
        rows=[[arm, fmt(size[arm], "B", errors[arm]), fmt(ms[arm], "ms", errors[arm]), shape[arm]] for arm in ARMS],
    )
    return rows, [table], {arm: [o.value or o.error for o in outcomes[arm]] for arm in ARMS}


if __name__ == "__main__":
    harness.child_main(measure, _parser())
