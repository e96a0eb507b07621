"""``codeguru-agent collector``: run the local CodeGuru Profiler API until SIGINT or SIGTERM.

The first line on stdout is ``listening on http://HOST:PORT`` (with the port actually bound, so
``--port 0`` works), which is how scripts and tests find it; logs go to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import Dict, List, Optional, Sequence

from codeguru_agent.collector.faults import Fault, FaultError, parse_delay_spec, parse_drop_spec, parse_status_spec
from codeguru_agent.collector.server import DEFAULT_MAX_BODY_BYTES, CollectorError, CollectorOptions, CollectorServer

DEFAULT_DB_PATH = "codeguru-collector.db"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codeguru-agent collector",
        description="Serve the Amazon CodeGuru Profiler API locally, storing profiles in SQLite.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port to listen on; 0 picks a free one (default: 8080)")
    parser.add_argument(
        "--db", default=DEFAULT_DB_PATH, help=f"SQLite database file, or :memory: (default: ./{DEFAULT_DB_PATH})"
    )
    parser.add_argument(
        "--auto-create",
        action="store_true",
        help="create unknown profiling groups on first ConfigureAgent or PostAgentProfile",
    )
    parser.add_argument(
        "--max-body-mb",
        type=float,
        default=DEFAULT_MAX_BODY_BYTES / 2**20,
        help="largest request body, and largest decompressed profile, in MiB (default: 16)",
    )
    parser.add_argument(
        "--access-key",
        default=os.environ.get("CODEGURU_COLLECTOR_ACCESS_KEY"),
        help="require SigV4 signatures made with this access key id (or $CODEGURU_COLLECTOR_ACCESS_KEY)",
    )
    parser.add_argument(
        "--secret-key",
        default=os.environ.get("CODEGURU_COLLECTOR_SECRET_KEY"),
        help="the secret key for --access-key (or $CODEGURU_COLLECTOR_SECRET_KEY)",
    )
    steering = parser.add_argument_group("ConfigureAgent overrides")
    steering.add_argument(
        "--should-profile", choices=("true", "false"), help="answer shouldProfile with this for every group"
    )
    steering.add_argument(
        "--period", type=int, metavar="SECONDS", help="answer periodInSeconds with this (default: 300)"
    )
    steering.add_argument(
        "--agent-parameter",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="add or override one agentParameters value, e.g. SamplingIntervalInMilliseconds=100 (repeatable)",
    )
    testing = parser.add_argument_group("testing")
    testing.add_argument(
        "--test-hooks",
        action="store_true",
        help="serve the /_test/ admin API (faults, overrides, stored profiles, request journal)",
    )
    testing.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="OPERATION:STATUS[:CODE[:COUNT]]",
        help="fail the next COUNT (default 1) requests of OPERATION with STATUS and error CODE (repeatable)",
    )
    testing.add_argument(
        "--fault-delay-ms",
        action="append",
        default=[],
        metavar="OPERATION:MILLISECONDS[:COUNT]",
        help="answer the next COUNT requests of OPERATION late, but normally (repeatable)",
    )
    testing.add_argument(
        "--fault-drop",
        action="append",
        default=[],
        metavar="OPERATION[:COUNT]",
        help="close the connection of the next COUNT requests of OPERATION without answering (repeatable)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser


def _options(args: argparse.Namespace) -> CollectorOptions:
    faults: List[Fault] = [parse_status_spec(spec) for spec in args.fault]
    faults += [parse_delay_spec(spec) for spec in args.fault_delay_ms]
    faults += [parse_drop_spec(spec) for spec in args.fault_drop]
    parameters: Dict[str, str] = {}
    for item in args.agent_parameter:
        name, separator, value = item.partition("=")
        if not separator:
            raise CollectorError(f"--agent-parameter {item!r}: expected NAME=VALUE")
        parameters[name] = value
    if args.max_body_mb <= 0:
        raise CollectorError("--max-body-mb must be positive")
    return CollectorOptions(
        host=args.host,
        port=args.port,
        db_path=args.db,
        auto_create=args.auto_create,
        test_hooks=args.test_hooks,
        max_body_bytes=int(args.max_body_mb * 2**20),
        access_key=args.access_key,
        secret_key=args.secret_key,
        should_profile=None if args.should_profile is None else args.should_profile == "true",
        period_s=args.period,
        agent_parameters=parameters,
        faults=faults,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the collector until SIGINT or SIGTERM; 0 after a clean stop, 2 for bad options, 1 if it cannot start."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        server = CollectorServer(_options(args))
    except (CollectorError, FaultError) as error:
        sys.stderr.write(f"codeguru-agent collector: {error}\n")
        return 2
    stop = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(f"listening on {server.url}", flush=True)
        while not stop.wait(1.0):
            pass
    except CollectorError as error:
        sys.stderr.write(f"codeguru-agent collector: {error}\n")
        return 1
    finally:
        server.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)
    return 0
