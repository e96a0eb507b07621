"""Fork: every child gets an agent of its own (its own pid, threads, backlog), multiprocessing and
ProcessPoolExecutor workers that leave through ``os._exit`` still deliver, and a fork while the agent
is still importing, or making its first SSL context, never leaves a child hanging."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reliability.helpers import (
    agent_env,
    assert_each_token_once,
    attempts,
    error_count,
    host_script,
    process_ids,
    run_host,
)
from support.collector_client import CollectorHandle

GROUP = "Fork"

FORKING_HOST = """\
import json
import os
import sys
import threading
import time
import codeguru_agent

def busy(seconds):
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        count += 1
    return count

def agent_threads():
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("codeguru-agent"))

profiler = codeguru_agent.Profiler()
profiler.start()
if sys.argv[2] == "restarted":
    profiler.stop()
    profiler.start()
busy(0.2)
profiler.flush(5.0)  # the collector refuses this one: the parent holds it in its backlog at the fork
pid = os.fork()
if pid == 0:
    busy(0.3)
    with open(sys.argv[1] + ".child", "w") as file:
        json.dump(agent_threads(), file)
    sys.exit(0)
_, status = os.waitpid(pid, 0)
with open(sys.argv[1], "w") as file:
    json.dump({"child": pid, "threads": agent_threads()}, file)
print("child exit code", os.waitstatus_to_exitcode(status))
busy(0.1)
"""


ONE_AGENT = ["codeguru-agent-sampler", "codeguru-agent-uploader"]


def test_a_forked_child_is_profiled_on_its_own(collector: CollectorHandle, tmp_path: Path) -> None:
    collector.create_group(GROUP)
    collector.fail_next("PostAgentProfile", status=500)
    facts = tmp_path / "facts.json"
    run = run_host(
        host_script(tmp_path, FORKING_HOST), agent_env(collector, GROUP, tmp_path), args=[str(facts), "started"]
    )

    run.assert_host_intact("child exit code 0\n", 0)
    child = json.loads(facts.read_text())["child"]
    assert json.loads(Path(str(facts) + ".child").read_text()) == ONE_AGENT, "the child runs an agent of its own"
    entries = assert_each_token_once(collector, GROUP)
    assert sorted(set(process_ids(entries))) == sorted([run.pid, child])
    held = attempts(collector)[0]
    assert held["fault"]
    holder = [pid for entry, pid in zip(entries, process_ids(entries)) if entry["profileToken"] == held["token"]]
    assert holder == [run.pid], "the profile the parent held at the fork is delivered once, by the parent"


def test_a_restarted_profiler_runs_one_agent_in_the_child(collector: CollectorHandle, tmp_path: Path) -> None:
    collector.create_group(GROUP)
    facts = tmp_path / "facts.json"
    run = run_host(
        host_script(tmp_path, FORKING_HOST), agent_env(collector, GROUP, tmp_path), args=[str(facts), "restarted"]
    )

    run.assert_host_intact("child exit code 0\n", 0)
    assert json.loads(facts.read_text())["threads"] == ONE_AGENT
    assert json.loads(Path(str(facts) + ".child").read_text()) == ONE_AGENT, "start, stop, start: one agent"
    entries = assert_each_token_once(collector, GROUP)
    assert json.loads(facts.read_text())["child"] in process_ids(entries)


POOL_HOST = """\
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
import codeguru_agent

def work(n):
    end = time.monotonic() + 0.05
    while time.monotonic() < end:
        pass
    return n * n, os.getpid()

if __name__ == "__main__":
    codeguru_agent.start()
    context = multiprocessing.get_context("fork")
    if sys.argv[2] == "pool":
        pool = context.Pool(2)
        results = pool.map(work, range(8), chunksize=1)
        pool.close()
        pool.join()
    else:
        with ProcessPoolExecutor(2, mp_context=context) as executor:
            results = list(executor.map(work, range(8)))
    with open(sys.argv[1], "w") as file:
        json.dump(sorted({pid for _, pid in results}), file)
    print("squares", [square for square, _ in results])
"""


@pytest.mark.parametrize("kind", ["pool", "executor"])
def test_multiprocessing_workers_deliver_although_they_exit_through_os_exit(
    collector: CollectorHandle, tmp_path: Path, kind: str
) -> None:
    """The reporting interval is the default five minutes: what arrives is the workers' exit flush."""
    collector.create_group(GROUP)
    workers_file = tmp_path / "workers.json"
    run = run_host(
        host_script(tmp_path, POOL_HOST),
        agent_env(collector, GROUP, tmp_path),
        args=[str(workers_file), kind],
        timeout_s=30,
    )

    run.assert_host_intact(f"squares {[n * n for n in range(8)]}\n", 0)
    workers = json.loads(workers_file.read_text())
    entries = assert_each_token_once(collector, GROUP)
    assert set(workers) <= set(process_ids(entries)), "a worker's profile never arrived"
    assert run.pid in process_ids(entries)
    assert run.agent_warnings == []


FORK_WHILE_IMPORTING = """\
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import threading
import time
import codeguru_agent

MODULE = sys.argv[1]
entered, released = threading.Event(), threading.Event()


class HoldTheAgentsImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    \"\"\"Holds the agent's first import of MODULE while it runs the module's code, that module's
    import lock taken, until a fork begins; the import then takes a while longer, as on a slow disk.
    (The finding step would not do: CPython's fork waits for it, under its global import lock.)\"\"\"

    def find_spec(self, name, path=None, target=None):
        if name != MODULE or not threading.current_thread().name.startswith("codeguru-agent") or entered.is_set():
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        self.loader, spec.loader = spec.loader, self
        return spec

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        entered.set()
        released.wait(30)
        time.sleep(0.2)
        self.loader.exec_module(module)


sys.meta_path.insert(0, HoldTheAgentsImport())
codeguru_agent.start()
if not entered.wait(30):
    sys.exit("the agent never imported " + MODULE)
os.register_at_fork(before=released.set)  # runs before the agent's own hook: the import is under way
pid = os.fork()
if pid == 0:
    code = 0
    try:
        importlib.import_module(MODULE)  # waits forever on a module lock the fork left held
    except BaseException:
        code = 1
    os._exit(code)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        print("child exit code", os.waitstatus_to_exitcode(status))
        break
    time.sleep(0.01)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("child hung")
"""


@pytest.mark.parametrize(
    "module",
    [
        "botocore",  # the client, built behind the agent's import gate
        "codeguru_agent.fleet.default",  # the platform identity, imported outside the gate
    ],
)
def test_a_fork_while_the_agent_imports_never_hangs_a_child(
    collector: CollectorHandle, tmp_path: Path, module: str
) -> None:
    """The host forks while the agent's thread is inside an import, holding that module's lock.

    The child then imports the same module: a lock orphaned by the fork would hang it. (The
    children's own agents are covered by the tests above, whose workers are forked right after the
    agent starts.)
    """
    collector.create_group(GROUP)
    run = run_host(host_script(tmp_path, FORK_WHILE_IMPORTING), agent_env(collector, GROUP, tmp_path), args=[module])

    run.assert_host_intact("child exit code 0\n", 0)
    entries = assert_each_token_once(collector, GROUP)
    assert process_ids(entries) == [run.pid]


RESTART_FAILS_IN_CHILD = """\
import os
import threading
import time
import codeguru_agent

def cannot_start_threads(self):
    raise RuntimeError("can't start new thread")

# Registered before the agent's own hook, so it runs first in each child: the child's agent cannot
# start its threads, as in a process at its thread limit.
os.register_at_fork(after_in_child=lambda: setattr(threading.Thread, "start", cannot_start_threads))

profiler = codeguru_agent.start()
profiler.wait_for_sampling(30)
for _ in range(2):
    pid = os.fork()
    if pid == 0:
        names = [t.name for t in threading.enumerate() if t.name.startswith("codeguru-agent")]
        os._exit(0 if names == [] else 1)
    _, status = os.waitpid(pid, 0)
    print("child exit code", os.waitstatus_to_exitcode(status))
end = time.monotonic() + 0.1
while time.monotonic() < end:
    pass
"""


def test_a_child_whose_agent_cannot_restart_is_counted_in_the_parents_next_profile(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    collector.create_group(GROUP)
    run = run_host(host_script(tmp_path, RESTART_FAILS_IN_CHILD), agent_env(collector, GROUP, tmp_path))

    run.assert_host_intact("child exit code 0\n" * 2, 0)
    entries = assert_each_token_once(collector, GROUP)
    assert process_ids(entries) == [run.pid]
    assert sum(error_count(entry, "childRestartErrors") for entry in entries) == 2
    assert run.agent_warnings == []


FORKS_DURING_THE_BOTO3_LOAD = """\
import importlib.abc
import importlib.machinery
import json
import os
import sys
import threading
import time
import codeguru_agent

HELD = "botocore.credentials"  # imported by botocore.session, halfway through the agent's load
FORKS = 20
in_held_import, release = threading.Event(), threading.Event()


class HeldLoader(importlib.abc.Loader):
    def __init__(self, real):
        self.real = real

    def get_code(self, name):
        return self.real.get_code(name)

    def create_module(self, spec):
        return self.real.create_module(spec)

    def exec_module(self, module):
        in_held_import.set()
        release.wait()
        self.real.exec_module(module)


class HoldOneModule(importlib.abc.MetaPathFinder):
    # The agent's import of HELD waits, inside the import, until the test releases it.
    def find_spec(self, name, path, target=None):
        if name != HELD or not threading.current_thread().name.startswith("codeguru-agent"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        spec.loader = HeldLoader(spec.loader)
        return spec


def child(facts_path):
    seen = {name: name in sys.modules for name in (HELD, "botocore.session")}
    import botocore.session  # what the agent was loading: hangs if the fork left its lock held
    import urllib3.util.ssl_
    "collector.example".encode("idna")
    if facts_path:
        with open(facts_path, "w") as file:
            json.dump(seen, file)
    os._exit(0)


def busy(stop):
    while not stop.is_set():
        sum(i * i for i in range(1000))


sys.meta_path.insert(0, HoldOneModule())
codeguru_agent.start()
assert in_held_import.wait(60), "the agent never reached the held import"
fork_begun = threading.Event()
os.register_at_fork(before=fork_begun.set)  # runs before the agent's own hook (last in, first out)
threading.Thread(target=lambda: fork_begun.wait() and release.set()).start()
children = []
pid = os.fork()  # the agent is inside HELD's import: the fork waits for that one module, no more
if pid == 0:
    child(sys.argv[1])
children.append(pid)
stop = threading.Event()
threading.Thread(target=busy, args=(stop,)).start()  # a busy host: the agent's load competes for the GIL
for index in range(FORKS):
    pid = os.fork()
    if pid == 0:
        child(None)
    children.append(pid)
    sum(i * i for i in range(20000))
stop.set()
codes, deadline = {}, time.monotonic() + 60
while len(codes) < len(children) and time.monotonic() < deadline:
    for pid in children:
        if pid not in codes:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                codes[pid] = os.waitstatus_to_exitcode(status)
    time.sleep(0.01)
for pid in children:
    if pid not in codes:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
print("exit codes", sorted(set(codes.values())), "hung", len(children) - len(codes))
"""


def test_a_fork_waits_for_the_agents_current_module_only_and_no_child_hangs(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    """The agent is held inside the import of one module of botocore when the host forks: the fork
    goes ahead as soon as that module is loaded, before the agent loads the next one (the child's
    copy of ``sys.modules`` says where the fork landed), and every child, this one and twenty
    forked while the agent goes on loading on a busy host, imports botocore without hanging."""
    collector.create_group(GROUP)
    facts = tmp_path / "facts.json"
    run = run_host(
        host_script(tmp_path, FORKS_DURING_THE_BOTO3_LOAD), agent_env(collector, GROUP, tmp_path), args=[str(facts)]
    )

    run.assert_host_intact("exit codes [0] hung 0\n", 0)
    seen = json.loads(facts.read_text())
    assert seen == {"botocore.credentials": True, "botocore.session": False}, "the fork waited for more than one module"
    assert process_ids(assert_each_token_once(collector, GROUP)) == [run.pid]


FORK_WHILE_MAKING_AN_SSL_CONTEXT = """\
import os
import ssl
import sys
import threading
import time
from codeguru_agent.host import forksafe

class Agent:
    def restart_in_child(self):
        pass

agent = Agent()
forksafe.on_fork_in_child(agent.restart_in_child)  # as the profiler registers itself at start()
# An agent thread makes this process's first SSL context, as the agent's does when it builds its
# client; the host forks the moment it sees that thread inside it.
maker = threading.Thread(target=ssl.create_default_context, name=forksafe.AGENT_THREAD_PREFIX + "-client")
maker.start()
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    frame = sys._current_frames().get(maker.ident)
    if frame is not None and frame.f_code is ssl.SSLContext.__new__.__code__:
        break
del frame
pid = os.fork()
if pid == 0:
    ssl.create_default_context()  # the child's own first SSL context
    os._exit(0)
deadline = time.monotonic() + 10
while not os.waitpid(pid, os.WNOHANG)[0]:
    if time.monotonic() > deadline:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        print("child hung")
        break
    time.sleep(0.01)
else:
    print("child done")
maker.join()
"""


def test_a_fork_while_an_agent_thread_makes_an_ssl_context_never_hangs_the_child(tmp_path: Path) -> None:
    """A process's first SSL context takes OpenSSL's global locks (without the GIL) while it caches
    the ciphers; a child forked meanwhile inherits them locked and hangs at its own first SSL
    context (a worker's HTTPS calls, its agent's client) and at its exit. Before the fork waited for
    it, 19 children in 20 hung here."""
    script = tmp_path / "fork_while_ssl.py"
    script.write_text(FORK_WHILE_MAKING_AN_SSL_CONTEXT)
    outcomes = [
        subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60).stdout.strip()
        for _ in range(5)
    ]
    assert outcomes == ["child done"] * 5, outcomes


AGENT_IMPORTS_WHILE_THE_LOADING_IS_HELD = """\
import sys
import threading
import time
from contextlib import contextmanager

from codeguru_agent.config import AgentConfig
from codeguru_agent.host import forksafe
from codeguru_agent.sampling.runner import Runner
from codeguru_agent.sampling.sampler import Sampler

GATE = forksafe.agent_import.__wrapped__.__code__


def waits_at_the_gate(thread):
    frame = sys._current_frames().get(thread.ident)
    while frame is not None and frame.f_code is not GATE:
        frame = frame.f_back
    return frame is not None


def imported_once_let_go(module, step, held):
    # While the loading is held, an agent thread's import must wait for it to be let go.
    assert module not in sys.modules, module + " loaded before the test"
    with held():
        thread = threading.Thread(target=step, name="codeguru-agent-sampler", daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not waits_at_the_gate(thread):
            if not thread.is_alive() or time.monotonic() > deadline:
                print(module, "imported while held:", module in sys.modules)
                return
            time.sleep(0.005)
        imported_while_held = module in sys.modules
    thread.join(30)
    print(module, "waited" if not imported_while_held and module in sys.modules else "went wrong")


@contextmanager
def settling():
    forksafe.settle(60)  # as after gevent's patch_all(): until the host's hub first runs
    yield
    forksafe.settled()


# The sampling thread does not wait for dis: it samples on without it, and takes it up once let go.
runner = Runner(AgentConfig(), on_sealed=lambda aggregate, cpu_s: None)
with forksafe.import_gate():
    print("dis held back:", runner._take_up_leaves() and "dis" not in sys.modules)
print("dis taken up:", not runner._take_up_leaves() and "dis" in sys.modules)
parked = threading.Event()
for _ in range(3):
    threading.Thread(target=parked.wait, daemon=True).start()
imported_once_let_go("random", Sampler(AgentConfig(max_threads=1)).sample, forksafe.import_gate)
parked.set()
imported_once_let_go("colorsys", lambda: forksafe.load(["colorsys"]), settling)
forksafe.settle(0.2)  # never let go: the loading goes on when the time is up
loading = threading.Thread(target=forksafe.load, args=(["wave"],))
loading.start()
loading.join(30)
print("wave loaded when the time was up:", "wave" in sys.modules)
"""


def test_an_agent_threads_import_waits_while_the_loading_is_held(tmp_path: Path) -> None:
    """The agent's imports after it starts (``dis`` after the first tick, ``random`` above
    ``max_threads``, every module of its loading) begin only while the loading is open: not while a
    fork is pending (the fork's check of the agent's frames returns before the fork itself, and the
    GIL can change hands in between: another before-fork hook, the import lock), and not while the
    host starts up after gevent's ``patch_all()`` (``forksafe.settle``), up to its time limit. The
    sampling thread never waits for ``dis``: it samples on without it and takes it up later."""
    script = tmp_path / "held_imports.py"
    script.write_text(AGENT_IMPORTS_WHILE_THE_LOADING_IS_HELD)
    run = subprocess.run([sys.executable, "-I", str(script)], capture_output=True, text=True, timeout=120)
    assert run.stdout.splitlines() == [
        "dis held back: True",
        "dis taken up: True",
        "random waited",
        "colorsys waited",
        "wave loaded when the time was up: True",
    ], run.stdout + run.stderr
