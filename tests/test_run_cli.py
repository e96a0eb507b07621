"""``python -m codeguru_agent`` and ``codeguru-agent run``: real programs in real subprocesses.

The program must behave exactly as under ``python program.py``: its own arguments, ``__main__``,
``sys.path[0]``, pickling, ``multiprocessing``, exit status and traceback; and the agent must
profile it, saying what it cannot do in one WARNING line on stderr.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from codeguru_agent.reporting.document import walk_callgraph
from support.flamegraph_page import frames
from support.programs import (
    CRUNCH,
    ENTRY_POINTS,
    clean_env,
    command,
    finish,
    function_count,
    has_function,
    profile_files,
    read_profiles,
    run,
    write_program,
)

REPORT_ARGV = """
import json, os, sys
print(json.dumps({"argv": sys.argv, "path0": sys.path[0], "name": __name__, "file": __file__,
                  "main_file": sys.modules["__main__"].__file__}))
"""


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_arguments_from_the_script_on_belong_to_the_program(entry: str, tmp_path: Path) -> None:
    program = write_program(tmp_path / "app", REPORT_ARGV)
    out = tmp_path / "out"
    own = ["-p", "NotTheGroup", "--log", "debug", "-m", "json", "--local", "elsewhere", "--", "-x"]

    done = run(entry, ["-p", "CliGroup", "--local", str(out), str(program), *own], clean_env(tmp_path), cwd=tmp_path)

    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout_lines[0])
    assert seen["argv"] == [str(program), *own]
    assert seen["name"] == "__main__"
    assert seen["path0"] == os.path.realpath(program.parent)
    assert seen["file"] == seen["main_file"] == str(program)
    assert all(path.name.startswith("profile-CliGroup-") for path in profile_files(out)), "our -p was not ours"
    assert not (tmp_path / "elsewhere").exists(), "the program's --local was taken as ours"


def test_a_relative_script_path_gets_an_absolute_file_as_in_python(tmp_path: Path) -> None:
    write_program(tmp_path / "app", REPORT_ARGV)

    done = run(ENTRY_POINTS[0], ["--local", "out", "app/program.py", "one"], clean_env(tmp_path), cwd=tmp_path)

    seen = json.loads(done.stdout_lines[0])
    assert seen["argv"] == [str(tmp_path / "app" / "program.py"), "one"]
    assert seen["file"] == str(tmp_path / "app" / "program.py")
    assert seen["path0"] == os.path.realpath(tmp_path / "app")


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_module_mode_runs_the_module_as_main_with_the_working_directory_on_the_path(entry: str, tmp_path: Path) -> None:
    write_program(tmp_path / "shop", "")
    write_program(tmp_path / "shop", REPORT_ARGV, name="report.py")
    write_program(tmp_path / "shop", "import shop.report\n", name="__main__.py")

    as_module = run(entry, ["--local", "out", "-m", "shop.report", "-p", "theirs"], clean_env(tmp_path), cwd=tmp_path)
    as_package = run(entry, ["--local", "out", "-m", "shop"], clean_env(tmp_path), cwd=tmp_path)

    assert as_module.returncode == 0, as_module.stderr
    seen = json.loads(as_module.stdout_lines[0])
    assert seen["argv"] == [str(tmp_path / "shop" / "report.py"), "-p", "theirs"]
    assert seen["name"] == "__main__"
    assert seen["path0"] == str(tmp_path)
    assert as_package.returncode == 0, as_package.stderr
    assert json.loads(as_package.stdout_lines[0])["name"] == "shop.report"


EXIT_PROGRAMS = {
    "returns": ("print('ran')", 0),
    "sys.exit(3)": ("import sys\nprint('ran')\nsys.exit(3)", 3),
    "sys.exit(None)": ("import sys\nprint('ran')\nsys.exit()", 0),
    "sys.exit('message')": ("import sys\nprint('ran')\nsys.exit('out of stock')", 1),
    "exception": ("def check_stock():\n    raise LookupError('no such item')\nprint('ran')\ncheck_stock()", 1),
    "KeyboardInterrupt": ("print('ran')\nraise KeyboardInterrupt", 130),
}


@pytest.mark.parametrize("case", sorted(EXIT_PROGRAMS))
@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_the_exit_status_is_the_programs(entry: str, case: str, tmp_path: Path) -> None:
    body, status = EXIT_PROGRAMS[case]
    program = write_program(tmp_path, body)

    done = run(entry, ["--local", str(tmp_path / "out"), str(program)], clean_env(tmp_path))

    assert done.returncode == status, done.stderr
    assert done.stdout_lines[0] == "ran"
    if case == "sys.exit('message')":
        assert "out of stock" in done.stderr.splitlines()
    if case in ("exception", "KeyboardInterrupt"):
        assert "Traceback (most recent call last):" in done.stderr


def test_an_uncaught_exception_shows_the_programs_traceback_only(tmp_path: Path) -> None:
    program = write_program(tmp_path, "def check_stock():\n    raise LookupError('no such item')\n\ncheck_stock()\n")
    direct = subprocess.run(
        [sys.executable, str(program)], check=False, capture_output=True, text=True, env=clean_env(tmp_path)
    )

    done = run(ENTRY_POINTS[0], ["-p", "Group", "--local", str(tmp_path / "out"), str(program)], clean_env(tmp_path))

    assert done.returncode == direct.returncode == 1
    assert done.stderr == direct.stderr
    assert "runpy" not in done.stderr and "codeguru_agent" not in done.stderr


PICKLE_AND_POOL = """
import multiprocessing, pickle, sys

class Order:
    def __init__(self, number, quantity):
        self.number, self.quantity = number, quantity

def total_quantity(order):
    return order.quantity * 2

if __name__ == "__main__":
    copy = pickle.loads(pickle.dumps(Order(7, 3)))
    print("pickled", type(copy).__module__, copy.number)
    for method in sys.argv[1:]:
        with multiprocessing.get_context(method).Pool(2) as pool:
            print(method, sum(pool.map(total_quantity, [Order(n, n) for n in range(10)])))
"""


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_pickling_and_multiprocessing_of_what_the_script_defines(entry: str, tmp_path: Path) -> None:
    methods = [method for method in ("fork", "spawn") if method in multiprocessing.get_all_start_methods()]
    program = write_program(tmp_path, PICKLE_AND_POOL)

    done = run(entry, ["--local", str(tmp_path / "out"), str(program), *methods], clean_env(tmp_path))

    assert done.returncode == 0, done.stderr
    assert done.stdout_lines[: 1 + len(methods)] == ["pickled __main__ 7"] + [f"{method} 90" for method in methods]
    assert "Traceback" not in done.stderr, done.stderr


LOCAL_PROGRAM = (
    CRUNCH
    + """
def price_the_orders():
    crunch(0.6)

print("priced")
price_the_orders()
"""
)


@pytest.mark.parametrize("profile_format", ["json", "ion"])
def test_local_mode_writes_profiles_and_prints_the_flame_graph_last(profile_format: str, tmp_path: Path) -> None:
    program = write_program(tmp_path, LOCAL_PROGRAM)
    out = tmp_path / "out"

    done = run(
        ENTRY_POINTS[0],
        ["--format", profile_format, "--local", str(out), str(program)],
        clean_env(tmp_path, AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS=5),
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout_lines[0] == "priced"
    flamegraph = Path(done.stdout_lines[-1])
    assert flamegraph == out.resolve() / "flamegraph.html"
    assert "price_the_orders" in flamegraph.read_text(encoding="utf-8")
    stacks = (out / "collapsed-stacks.txt").read_text(encoding="utf-8").splitlines()
    assert any(";" in line and "price_the_orders" in line for line in stacks), "the same samples, collapsed"
    assert sum(int(line.rpartition(" ")[2]) for line in stacks) == frames(flamegraph.read_text("utf-8"))[()]["total"]
    files = profile_files(out)
    assert files and all(path.suffix == "." + profile_format for path in files)
    documents = read_profiles(out)
    assert all(document["agentMetadata"]["agentInfo"]["type"] == "CodeGuruProfiler-python" for document in documents)
    assert has_function(documents, "price_the_orders")
    assert done.warnings == []


def test_the_profile_lasts_until_the_programs_threads_end(tmp_path: Path) -> None:
    """A non-daemon thread that outlives the main body is profiled to its end, like Python waits for it."""
    program = write_program(
        tmp_path,
        CRUNCH
        + """
import threading

def finish_the_batch():
    crunch(0.6)
    print("batch done", flush=True)

threading.Thread(target=finish_the_batch).start()
print("main body done", flush=True)
""",
    )
    out = tmp_path / "out"

    done = run(ENTRY_POINTS[0], ["--local", str(out), str(program)], clean_env(tmp_path))

    assert done.returncode == 0, done.stderr
    assert done.stdout_lines == ["main body done", "batch done", str(out.resolve() / "flamegraph.html")]
    assert has_function(read_profiles(out), "finish_the_batch")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_that_runs_to_the_end_is_profiled_but_prints_nothing(tmp_path: Path) -> None:
    program = write_program(
        tmp_path,
        CRUNCH
        + """
import os, sys
pid = os.fork()
crunch(0.2)
if pid == 0:
    print("child done", flush=True)
    sys.exit(0)
os.waitpid(pid, 0)
print("parent done", flush=True)
""",
    )
    out = tmp_path / "out"

    done = run(ENTRY_POINTS[0], ["--local", str(out), str(program)], clean_env(tmp_path))

    assert done.returncode == 0, done.stderr
    assert done.stdout_lines == ["child done", "parent done", str(out.resolve() / "flamegraph.html")]
    assert done.warnings == [], done.stderr
    processes = {document["debugInfo"]["processId"] for document in read_profiles(out)}
    assert len(processes) == 2, "the child's profile is missing"


def test_a_bad_environment_variable_is_one_warning_and_changes_nothing_else(tmp_path: Path) -> None:
    program = write_program(tmp_path, "import logging, sys\nlogging.basicConfig()\nprint('ran')\nsys.exit(3)\n")
    out = tmp_path / "out"

    done = run(
        ENTRY_POINTS[0], ["--local", str(out), str(program)], clean_env(tmp_path, AWS_CODEGURU_PROFILER_FORMAT="xml")
    )

    assert done.returncode == 3
    assert done.stdout_lines[0] == "ran"
    assert len(done.warnings) == 1, done.stderr
    assert "AWS_CODEGURU_PROFILER_FORMAT" in done.warnings[0] and "'xml'" in done.warnings[0]
    assert done.stderr.count("AWS_CODEGURU_PROFILER_FORMAT") == 1, "logged twice (root logger too?)"


@pytest.mark.parametrize(
    "variables, reason",
    [
        ({}, "no profiling group"),
        ({"AWS_CODEGURU_PROFILER_ENABLED": "false", "AWS_CODEGURU_PROFILER_GROUP_NAME": "Group"}, "disabled"),
    ],
)
def test_without_a_usable_configuration_the_program_runs_unprofiled(
    variables: dict, reason: str, tmp_path: Path
) -> None:
    program = write_program(tmp_path, "import sys\nprint('ran', sys.argv[1:])\nsys.exit(4)\n")

    done = run(ENTRY_POINTS[1], [str(program), "a"], clean_env(tmp_path, **variables), cwd=tmp_path)

    assert done.returncode == 4
    assert done.stdout == "ran ['a']\n"
    assert len(done.warnings) == 1 and reason in done.warnings[0], done.stderr
    assert "program.py" in done.warnings[0]


def test_log_level_option_shows_the_agents_info_lines(tmp_path: Path) -> None:
    program = write_program(tmp_path, "print('ran')\n")
    out = tmp_path / "out"

    quiet = run(ENTRY_POINTS[0], ["--local", str(out), str(program)], clean_env(tmp_path))
    chatty = run(ENTRY_POINTS[0], ["--log", "info", "--local", str(out), str(program)], clean_env(tmp_path))

    assert "codeguru-agent: INFO" not in quiet.stderr
    assert "codeguru-agent: INFO CodeGuru profiler started for local directory" in chatty.stderr


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["missing.py"], 2, "can't open file 'missing.py'"),
        ([], 2, "expected a script or -m module"),
        (["-m"], 2, "expected a script or -m module"),
        (["--format", "xml", "program.py"], 2, "invalid choice: 'xml'"),
        (["--help"], 0, "(script.py | -m module) [args...]"),
    ],
)
def test_usage(args: list, status: int, message: str, tmp_path: Path) -> None:
    write_program(tmp_path, "print('ran')\n")

    done = run(ENTRY_POINTS[0], args, clean_env(tmp_path), cwd=tmp_path)

    assert done.returncode == status
    assert message in done.stdout + done.stderr
    assert "ran" not in done.stdout


def test_importing_the_package_loads_no_boto3_and_starts_no_thread(tmp_path: Path) -> None:
    probe = """
import logging, sys, threading
import codeguru_agent
heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("boto3", "botocore", "amazon"))
handlers = [type(h).__name__ for h in logging.getLogger("codeguru_agent").handlers]
print(heavy, threading.active_count(), handlers)
"""
    done = subprocess.run(
        [sys.executable, "-c", probe], check=False, capture_output=True, text=True, env=clean_env(tmp_path), timeout=60
    )

    assert done.stdout.strip() == "[] 1 ['NullHandler']", done.stderr


def test_the_demo_example_profiles_its_own_functions(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "examples" / "order_pipeline.py"
    out = tmp_path / "out"

    done = run(ENTRY_POINTS[0], ["--local", str(out), str(example), "--seconds", "1.5"], clean_env(tmp_path))

    assert done.returncode == 0, done.stderr
    assert done.stdout_lines[0].startswith("processed ")
    assert done.stdout_lines[-1] == str(out.resolve() / "flamegraph.html")
    documents = read_profiles(out)
    for function in ("worker_loop", "process_order", "check_inventory", "take_orders"):
        assert has_function(documents, function), function
    assert sum(function_count(document, "process_order") for document in documents) > 0


SERVICE = """
import sys, time
def serve_requests():
    end = time.monotonic() + 0.3
    while time.monotonic() < end:
        sum(i * i for i in range(1000))
serve_requests()
print("serving", flush=True)
for _ in range(600):  # short sleeps: see the note on signals in support/programs.py
    time.sleep(0.1)
"""


def test_sigterm_flushes_the_last_interval_then_ends_the_program_as_sigterm_does(tmp_path: Path) -> None:
    """A container stop: the profile of the work done so far arrives, and the status is still SIGTERM's."""
    import signal

    program = write_program(tmp_path, SERVICE)
    out = tmp_path / "out"
    process = subprocess.Popen(
        command(ENTRY_POINTS[0], ["--local", str(out), str(program)]),
        env=clean_env(tmp_path, AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS=5),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "serving\n"
        process.send_signal(signal.SIGTERM)
        finished = finish(process, timeout_s=30)
    finally:
        process.kill()
    assert finished.returncode == -signal.SIGTERM, finished.stderr
    assert Path(finished.stdout_lines[-1]) == out.resolve() / "flamegraph.html"
    assert has_function(read_profiles(out), "serve_requests")


IDLER = """
import time
def idle():
    for _ in range(40):
        time.sleep(0.01)
idle()
"""


def test_a_sleeping_function_gets_its_sleep_frame(tmp_path: Path) -> None:
    """The runner imports ``dis`` itself after its first sample (the program never does), and from
    then on reads sleeps from the leaf's bytecode."""
    program = write_program(tmp_path, IDLER)
    out = tmp_path / "out"

    done = run(
        ENTRY_POINTS[0],
        ["--local", str(out), str(program)],
        clean_env(tmp_path, AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS=5),
    )

    assert done.returncode == 0, done.stderr
    sleeps = [
        path
        for document in read_profiles(out)
        for path, _ in walk_callgraph(document["callgraph"])
        if path[-1] == "<Sleep>" and path[-2].endswith(":idle")
    ]
    assert sleeps, "no <Sleep> frame under idle()"


FORKED_CHILDREN = """
import multiprocessing
import os
import signal
import sys
import threading


def disposition():
    handler = signal.getsignal(signal.SIGTERM)
    return "default" if handler == signal.SIG_DFL else getattr(handler, "__name__", repr(handler))


def in_child(write_end):
    os.write(write_end, disposition().encode())
    os._exit(0)


def fork_and_read():
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        in_child(write_end)
    os.close(write_end)
    answer = os.read(read_end, 100).decode()
    os.waitpid(pid, 0)
    return answer


def from_a_thread(answers):
    answers.append(fork_and_read())


def worker(_):
    return disposition()


print("parent", disposition())
print("fork", fork_and_read())
answers = []
thread = threading.Thread(target=from_a_thread, args=(answers,))
thread.start()
thread.join()
print("fork from a thread", answers[0])
with multiprocessing.get_context("fork").Pool(2) as pool:
    print("pool", sorted(set(pool.map(worker, range(8)))))


def own_handler(signum, frame):
    sys.exit(0)


signal.signal(signal.SIGTERM, own_handler)
print("fork after the program's own handler", fork_and_read())
"""


def test_a_forked_child_gets_the_programs_own_sigterm_disposition_back(tmp_path: Path) -> None:
    """SIGTERM ends a pool worker wherever it blocks, as it does without the agent.

    Before, every forked child inherited the last-interval flush handler: a Python handler, which a
    worker blocked on its task queue's semaphore may never run, so ``Pool.terminate()`` could wait
    forever for it. Only the program's own handler is kept.
    """
    program = write_program(tmp_path, FORKED_CHILDREN)

    done = run(ENTRY_POINTS[0], ["--local", str(tmp_path / "out"), str(program)], clean_env(tmp_path))

    assert done.returncode == 0, done.stderr
    assert done.stdout_lines[:5] == [
        "parent flush_then_die",
        "fork default",
        "fork from a thread default",
        "pool ['default']",
        "fork after the program's own handler own_handler",
    ]


EARLY_SIGTERM_SITE = """
import os
import signal


def sigterm_before_the_agents_hooks():
    # Runs in each forked child before any at-fork hook the command line registers later. A SIGTERM
    # can come sooner still, before the interpreter's own after-fork work, which forgets a signal its
    # handler caught: only one held blocked by the kernel since the fork is sure to end the child.
    held = signal.SIGTERM in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    print("in the child, SIGTERM is", "held" if held else "not held", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)


os.register_at_fork(after_in_child=sigterm_before_the_agents_hooks)
"""

FORK_AND_WAIT = """
import os
import time

pid = os.fork()
if pid == 0:
    time.sleep(0.5)
    print("the child outlived its SIGTERM", flush=True)
    os._exit(0)
_, status = os.waitpid(pid, 0)
print("child", "ended by signal %d" % os.WTERMSIG(status) if os.WIFSIGNALED(status) else "exited")
"""


def test_a_sigterm_that_reaches_a_child_before_its_at_fork_hooks_end_it(tmp_path: Path) -> None:
    """A child may get SIGTERM before it has the default back (a pool terminated while a new worker
    has not yet run): it must end, as it would without the agent. Caught by the inherited handler
    before the interpreter's after-fork work, it was forgotten there, and the worker lived on and
    hung its parent's ``terminate()`` (seen on 3.13: the worker blocked on its task queue)."""
    site = tmp_path / "site"
    write_program(site, EARLY_SIGTERM_SITE, name="sitecustomize.py")
    program = write_program(tmp_path, FORK_AND_WAIT)

    done = run(ENTRY_POINTS[0], ["--local", str(tmp_path / "out"), str(program)], clean_env(tmp_path, PYTHONPATH=site))

    assert done.returncode == 0, done.stderr
    assert done.stdout_lines[:2] == ["in the child, SIGTERM is held", f"child ended by signal {int(signal.SIGTERM)}"]


POOLS = """
import multiprocessing


def square(number):
    return number * number


if __name__ == "__main__":
    for method in ("fork", "spawn"):
        with multiprocessing.get_context(method).Pool(2) as pool:
            assert pool.map(square, range(20)) == [n * n for n in range(20)]
    print("pools done")
"""


def test_pools_in_with_blocks_end_every_time(tmp_path: Path) -> None:
    """``Pool.__exit__`` terminates its workers with SIGTERM; a run that hung once in 40 must never hang."""
    program = write_program(tmp_path, POOLS)
    for attempt in range(8):
        done = run(ENTRY_POINTS[0], ["--local", str(tmp_path / f"out-{attempt}"), str(program)], clean_env(tmp_path))
        assert done.returncode == 0, done.stderr
        assert "pools done" in done.stdout_lines


MODULE_PROGRAM = CRUNCH + "\ncrunch(0.4)\n"


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("as_module", [False, True], ids=["script", "module"])
def test_the_main_thread_starts_at_the_programs_module_as_under_python(
    entry: str, as_module: bool, tmp_path: Path
) -> None:
    """No frame of the launcher (runpy, ``codeguru_agent.cli.run``) at the root of the main thread's
    stacks, and no sample of the agent's own wait for its first sample: as under ``python app.py``."""
    write_program(tmp_path / "shop", "")
    program = write_program(tmp_path / "shop", MODULE_PROGRAM, name="app.py")
    out = tmp_path / "out"
    target = ["-m", "shop.app"] if as_module else [str(program)]

    done = run(
        entry,
        ["--local", str(out), *target],
        clean_env(tmp_path, AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS=5),
        cwd=tmp_path,
    )

    assert done.returncode == 0, done.stderr
    documents = read_profiles(out)
    module = ("shop.app" if as_module else "app") + ":<module>"
    roots = {name for document in documents for name in (document["callgraph"].get("children") or {})}
    assert roots == {module}, "the main thread's stacks start at the program's <module>"
    names = {name for document in documents for path, _ in walk_callgraph(document["callgraph"]) for name in path}
    assert any(name.endswith(":crunch") for name in names)
    assert not [name for name in names if "wait_for_sampling" in name or name.startswith("runpy:")]
    assert not [name for name in names if name.startswith("codeguru_agent.")]


def test_an_unreadable_profile_in_the_directory_is_named_and_the_flame_graph_still_written(tmp_path: Path) -> None:
    """A file left by an earlier run that cannot be decoded: one WARNING naming it, and the flame
    graph of every profile that can be read, not "no samples were recorded"."""
    program = write_program(tmp_path, LOCAL_PROGRAM)
    out = tmp_path / "out"
    out.mkdir()
    broken = out / "profile-local-2020-01-01T00-00-00-1-deadbeef.json"
    broken.write_bytes(b'{"callgraph": {"children": ')

    done = run(
        ENTRY_POINTS[0],
        ["--local", str(out), str(program)],
        clean_env(tmp_path, AWS_CODEGURU_PROFILER_SAMPLING_INTERVAL_MS=5),
    )

    assert done.returncode == 0, done.stderr
    flamegraph = Path(done.stdout_lines[-1])
    assert flamegraph == out.resolve() / "flamegraph.html"
    assert "price_the_orders" in flamegraph.read_text(encoding="utf-8")
    assert len(done.warnings) == 1, done.warnings
    assert str(broken) in done.warnings[0] and "skipped" in done.warnings[0]
