"""The ``codeguru-agent`` command: ``run``, ``collector`` and ``flamegraph`` subcommands.

Each subcommand lives in the module that does its job; this file only dispatches, and imports the
chosen module lazily so that ``codeguru-agent run`` never loads the collector.
"""

from __future__ import annotations

import sys
from typing import Callable, Final, Optional, Sequence

USAGE: Final = """usage: codeguru-agent COMMAND [options]

commands:
  run          profile a program: codeguru-agent run [options] (script.py | -m module) [args...]
  collector    serve the CodeGuru Profiler API locally, storing profiles in SQLite
  flamegraph   render profile documents (JSON or Ion files) as one self-contained HTML page

'codeguru-agent COMMAND --help' describes each command's options.
"""


def _command(name: str) -> Optional[Callable[[Sequence[str]], int]]:
    if name == "run":
        from codeguru_agent.cli.run import main as run_main

        return run_main
    if name == "collector":
        from codeguru_agent.cli.collector import main as collector_main

        return collector_main
    if name == "flamegraph":
        from codeguru_agent.cli.flamegraph import main as flamegraph_main

        return flamegraph_main
    return None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command = _command(args[0])
    if command is None:
        sys.stderr.write(f"codeguru-agent: unknown command {args[0]!r}\n\n{USAGE}")
        return 2
    return command(args[1:])
