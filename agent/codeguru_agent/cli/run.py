"""``codeguru-agent run`` and ``python -m codeguru_agent``: profile a whole program from its start.

The agent's options end at the script (or ``-m module``): every argument after it belongs to the
program, its own ``-p`` and ``--log`` included. The program runs as a real ``__main__``, with
``sys.argv`` and ``sys.path[0]`` set as ``python script.py`` sets them, so pickling and
``multiprocessing`` of what it defines work, and its exit status is the one Python would give it.
The profiler starts before the program's first line and stops, flushing, after its last.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import runpy
import signal
import sys
import threading
import zipfile
from dataclasses import dataclass
from typing import TYPE_CHECKING, Dict, Final, List, Optional, Sequence, Set, Tuple, Union

from codeguru_agent.version import VERSION

if TYPE_CHECKING:
    from codeguru_agent.profiler import Profiler

logger = logging.getLogger(__name__)

LOG_FORMAT: Final = "codeguru-agent: %(levelname)s %(message)s"
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EXIT_USAGE: Final = 2
"""Bad options, or a script that does not exist (Python's own status for ``python missing.py``)."""
EXIT_INTERRUPTED: Final = 130
"""Ctrl-C: what a shell reports for a Python program stopped by SIGINT (128 + 2)."""

_OPTIONS_WITH_VALUE: Final = frozenset(
    {
        "-p",
        "--profiling-group-name",
        "-r",
        "--region",
        "-c",
        "--credential-profile-name",
        "--format",
        "--local",
        "--log",
    }
)
"""The options of ``_parser`` that take a value: the split must step over it to find the program."""
_RUNNER_MODULES: Final = frozenset({"runpy", __name__})
"""Frames of these modules are the runner's, not the program's: left out of its tracebacks."""

_EPILOG: Final = """\
The program runs as __main__ with its own arguments; its exit status is the command's.
Every AWS_CODEGURU_PROFILER_* environment variable applies too; these options win over them.
With --local, the flame graph's path is printed as the last line of standard output."""


@dataclass(frozen=True)
class Program:
    """What to run: a script (file, directory or zip) or a module, and its arguments."""

    target: str
    is_module: bool
    args: Tuple[str, ...]

    def describe(self) -> str:
        return f"-m {self.target}" if self.is_module else self.target


def main(argv: Sequence[str], prog: str = "codeguru-agent run") -> int:
    """Profile one program; returns its exit status (or 2 for a usage error)."""
    parsed = _parse(list(argv), prog)
    if isinstance(parsed, int):
        return parsed
    options, program = parsed
    if not program.is_module and not os.path.exists(program.target):
        sys.stderr.write(f"{prog}: can't open file {program.target!r}: [Errno 2] No such file or directory\n")
        return EXIT_USAGE
    _log_to_stderr(options.log)
    profiler = _start_profiler(options, program)
    pid = os.getpid()
    if profiler is not None:
        _flush_on_sigterm(profiler, pid)
    try:
        return _execute(program)
    finally:
        if profiler is not None:
            _stop_when_program_ends(profiler, reports=os.getpid() == pid)


# --- options -------------------------------------------------------------------------------------


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        usage="%(prog)s [options] (script.py | -m module) [args...]",
        description="Run a Python program under the CodeGuru Profiler agent.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-p",
        "--profiling-group-name",
        metavar="GROUP",
        help="profiling group to report to (AWS_CODEGURU_PROFILER_GROUP_NAME)",
    )
    parser.add_argument(
        "-r", "--region", metavar="REGION", help="AWS region of the group (AWS_CODEGURU_PROFILER_TARGET_REGION)"
    )
    parser.add_argument(
        "-c",
        "--credential-profile-name",
        metavar="PROFILE",
        help="AWS shared-credentials profile to sign requests with",
    )
    parser.add_argument(
        "--format",
        type=str.lower,
        choices=("json", "ion"),
        help="profile encoding, json by default (AWS_CODEGURU_PROFILER_FORMAT)",
    )
    parser.add_argument(
        "--local",
        metavar="DIR",
        help="write profiles and a flame graph to DIR instead of the service (AWS_CODEGURU_PROFILER_LOCAL_DIR)",
    )
    parser.add_argument(
        "--log",
        type=str.upper,
        choices=LOG_LEVELS,
        metavar="LEVEL",
        help="the agent's log level on stderr, WARNING by default (AWS_CODEGURU_PROFILER_LOG_LEVEL)",
    )
    parser.add_argument("--version", action="version", version=f"codeguru-agent {VERSION}")
    return parser


def _parse(argv: List[str], prog: str) -> Union[int, Tuple[argparse.Namespace, Program]]:
    """The agent's options and the program, or the exit status of ``--help`` or a usage error."""
    parser = _parser(prog)
    option_args, program = _split(argv)
    try:
        options = parser.parse_args(option_args)
        if program is None:
            parser.error("expected a script or -m module to run")
    except SystemExit as exit:  # argparse's way out after --help, --version or an error
        return exit.code if isinstance(exit.code, int) else EXIT_USAGE
    assert program is not None
    return options, program


def _split(argv: List[str]) -> Tuple[List[str], Optional[Program]]:
    """Options up to the first non-option argument or ``-m``; the program is everything after.

    argparse alone cannot do this: it would take the program's own ``-p`` or ``--log`` as ours.
    """
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            rest = argv[index + 1 :]
            return argv[:index], Program(rest[0], False, tuple(rest[1:])) if rest else None
        if arg == "-m":
            if index + 1 == len(argv):
                return argv[:index], None
            return argv[:index], Program(argv[index + 1], True, tuple(argv[index + 2 :]))
        if arg.startswith("-m") and len(arg) > 2:  # -mpackage.module, as python accepts it
            return argv[:index], Program(arg[2:], True, tuple(argv[index + 1 :]))
        if not arg.startswith("-"):
            return argv[:index], Program(arg, False, tuple(argv[index + 1 :]))
        index += 2 if arg in _OPTIONS_WITH_VALUE else 1
    return argv, None


# --- the agent -----------------------------------------------------------------------------------


def _log_to_stderr(level: Optional[str]) -> None:
    """The agent's records on stderr with a prefix; the program's own logging is left alone."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    package = logging.getLogger("codeguru_agent")
    package.addHandler(handler)
    package.setLevel(level or logging.WARNING)
    package.propagate = False  # a program that configures the root logger must not print ours twice


def _start_profiler(options: argparse.Namespace, program: Program) -> Optional[Profiler]:
    """The started profiler, or None after one WARNING saying why the program runs without it."""
    from codeguru_agent.profiler import Profiler

    running_without = f"running {program.describe()} without the profiler"
    try:
        profiler = Profiler(
            profiling_group_name=options.profiling_group_name,
            region_name=options.region,
            credential_profile=options.credential_profile_name,
            profile_format=options.format,
            local_dir=options.local,
            log_level=options.log,
        )
    except Exception:  # the program runs whatever happens to the agent
        logger.warning("the profiler could not be set up; %s", running_without, exc_info=True)
        return None
    config = profiler.config
    if not config.enabled:
        logger.warning("profiling is disabled by AWS_CODEGURU_PROFILER_ENABLED; %s", running_without)
        return None
    if not config.profiling_group_name and not config.local_dir:
        logger.warning(
            "no profiling group: pass -p GROUP (or set AWS_CODEGURU_PROFILER_GROUP_NAME), "
            "or write profiles to a directory with --local DIR; %s",
            running_without,
        )
        return None
    if not profiler.start():
        return None  # start() has logged why not
    profiler.wait_for_sampling()  # the program's first moments are sampled too (bounded)
    return profiler


def _stop_when_program_ends(profiler: Profiler, reports: bool) -> None:
    """Stop now, or, if the program left non-daemon threads running, after the interpreter joins them.

    Python waits for those threads before it runs atexit callbacks, so a callback registered now
    profiles them to their end (waiting here instead could deadlock on a pool's idle workers, which
    the interpreter releases before joining). Only the process that started the program reports:
    a forked child that runs on to the end of the program stops its own agent silently.
    """
    if _program_threads_alive():
        atexit.register(_stop_and_report, profiler, reports)
    else:
        _stop_and_report(profiler, reports)


def _flush_on_sigterm(profiler: Profiler, pid: int) -> None:
    """A SIGTERM (a container or service manager stopping the program) flushes before it kills.

    Python's default for SIGTERM ends the process without atexit, losing the last interval. Only
    the default is replaced, and only for the process that started the program: the handler stops
    the agent within its shutdown deadline, prints the flame graph's path in local mode, then dies
    of the same signal, so the status a supervisor sees is unchanged. A program that installs its
    own handler replaces this one.

    A forked child gets the default back as it starts, unless the program has installed a handler of
    its own by then. A Python handler runs only once the main thread is back between bytecodes: a
    ``multiprocessing`` pool worker that receives ``terminate()``'s SIGTERM just as it blocks on its
    task queue's semaphore would never run it, never exit, and its parent would wait for it forever.
    The kernel's default ends the worker wherever it is, as it does without the agent.

    SIGTERM stays blocked in the forking thread from just before the fork until the child has the
    default back: one that reached the child earlier (a pool terminated while its new worker still
    ran the at-fork hooks, the agent's restart among them) would be caught by the inherited handler,
    and then dropped once the default was in place, leaving the worker alive. Blocked, it waits in
    the kernel and ends the child the moment the mask is restored.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return

    def flush_then_die(signum: int, _frame: object) -> None:
        signal.signal(signum, signal.SIG_DFL)
        try:
            if os.getpid() == pid:
                _stop_and_report(profiler, reports=True)
        finally:
            os.kill(os.getpid(), signum)

    masks_before_fork: Dict[int, Set[int]] = {}
    """The forking thread's signal mask before SIGTERM was blocked for its fork, by thread."""

    def hold_sigterm() -> None:
        if signal.getsignal(signal.SIGTERM) is flush_then_die:
            masks_before_fork[threading.get_ident()] = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})

    def release_in_parent() -> None:
        mask = masks_before_fork.pop(threading.get_ident(), None)
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def default_in_child() -> None:
        mask = masks_before_fork.pop(threading.get_ident(), None)
        masks_before_fork.clear()  # other threads' forks in flight belong to the parent
        if signal.getsignal(signal.SIGTERM) is flush_then_die:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # a SIGTERM held meanwhile ends the child here

    signal.signal(signal.SIGTERM, flush_then_die)
    if hasattr(os, "register_at_fork"):
        os.register_at_fork(before=hold_sigterm, after_in_parent=release_in_parent, after_in_child=default_in_child)


def _program_threads_alive() -> bool:
    ignored = (threading.main_thread(), threading.current_thread())
    return any(not thread.daemon and thread.is_alive() and thread not in ignored for thread in threading.enumerate())


def _stop_and_report(profiler: Profiler, reports: bool) -> None:
    profiler.stop()
    local_dir = profiler.config.local_dir
    if not reports or not local_dir:
        return
    path = profiler.flamegraph_path
    if path is None:
        if not _has_profiles(local_dir):  # else the agent has said what failed
            logger.warning("no flame graph written to %s: no samples were recorded", local_dir)
        return
    _print_last_line(os.path.abspath(path))


def _has_profiles(directory: str) -> bool:
    try:
        return any(name.startswith("profile-") for name in os.listdir(directory))
    except OSError:
        return False


def _print_last_line(text: str) -> None:
    """On stdout (after anything the program left on stderr), or on stderr if stdout is gone."""
    for stream in (sys.stderr, sys.stdout):
        try:
            stream.flush()
        except (AttributeError, OSError, ValueError):
            pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.write(text + "\n")
            stream.flush()
            return
        except (AttributeError, OSError, ValueError):  # closed, detached or a broken pipe
            continue


# --- the program ---------------------------------------------------------------------------------


def _execute(program: Program) -> int:
    """Run the program as ``__main__``; its exit status, reported the way the interpreter would."""
    sys.argv = [program.target, *program.args]
    if not (sys.flags.isolated or getattr(sys.flags, "safe_path", False)):
        entry = os.getcwd() if program.is_module else _script_path_entry(program.target)
        sys.path[:1] = [entry]
    try:
        if program.is_module:
            runpy.run_module(program.target, run_name="__main__", alter_sys=True)
        else:
            runpy.run_path(os.path.abspath(program.target), run_name="__main__")  # __file__ absolute, as in 3.9+
    except SystemExit as exit:
        return _exit_status(exit.code)
    except KeyboardInterrupt as interrupt:
        _report_uncaught(interrupt)
        return EXIT_INTERRUPTED
    except Exception as error:  # the program's uncaught exception: a traceback and status 1
        _report_uncaught(error)
        return 1
    return 0


def _script_path_entry(path: str) -> str:
    """``sys.path[0]`` as Python sets it: the script's real directory, or the directory or zip itself."""
    if os.path.isdir(path) or zipfile.is_zipfile(path):
        return os.path.abspath(path)
    return os.path.dirname(os.path.realpath(path))


def _exit_status(code: object) -> int:
    """``sys.exit(code)`` as the interpreter reads it: None is 0, an int is itself, else printed and 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    try:
        sys.stderr.write(f"{code}\n")
    except (AttributeError, OSError, ValueError):
        pass
    return 1


def _report_uncaught(error: BaseException) -> None:
    """The traceback Python would print: through ``sys.excepthook``, from the program's first frame."""
    trace = error.__traceback__
    while trace is not None and trace.tb_frame.f_globals.get("__name__") in _RUNNER_MODULES:
        trace = trace.tb_next
    error.__traceback__ = trace  # the interpreter's report reads the exception's own traceback
    try:
        sys.excepthook(type(error), error, trace)
    except Exception:  # a broken hook: Python falls back to the standard report too
        sys.__excepthook__(type(error), error, trace)
