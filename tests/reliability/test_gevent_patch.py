"""gevent's ``patch_all()`` under a running agent: the host's start-up imports come before the agent's."""

from __future__ import annotations

from pathlib import Path

from reliability.helpers import agent_env, assert_each_token_once, host_script, process_ids, run_host
from support.collector_client import CollectorHandle

GROUP = "GeventPatch"

PATCHED_AFTER_START = """\
import codeguru_agent
from codeguru_agent.host import forksafe

profiler = codeguru_agent.start()
from gevent import monkey

monkey.patch_all()  # as a gunicorn gevent worker does, its agent restarted at the fork
held = not forksafe.loading_open()
import gevent

gevent.sleep(0.01)  # the host's first wait on its hub: a server has loaded its code by then
print("the agent's loading waited for the hub:", held and forksafe.loading_open())
print("delivered:", profiler.flush(30.0))
"""


def test_after_patch_all_the_agent_loads_on_once_the_host_first_waits_on_its_hub(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    """After ``patch_all()`` the import system's module locks are gevent's: an agent thread importing
    a module the host's main greenlet imports at the same moment left the greenlet waiting on a lock
    an OS thread held (under ``gunicorn -k gevent``, a worker died at boot with ``LoopExit``, or hung:
    6 runs in 30 of the server benchmark's gevent arm lost a worker). So the agent's loading waits for
    the host's first wait on its hub, and then delivers as usual."""
    collector.create_group(GROUP)
    run = run_host(host_script(tmp_path, PATCHED_AFTER_START), agent_env(collector, GROUP, tmp_path))

    run.assert_host_intact("the agent's loading waited for the hub: True\ndelivered: True\n", 0)
    assert set(process_ids(assert_each_token_once(collector, GROUP))) == {run.pid}  # the flush, then the exit


PATCHED_AND_NEVER_WAITING = """\
import time

import codeguru_agent

codeguru_agent.start()
from gevent import monkey

monkey.patch_all()
end = time.monotonic() + 0.3
while time.monotonic() < end:  # never waits on the hub: the agent's loading goes on at the exit
    pass
print("done")
"""


def test_a_patched_host_that_never_waits_on_its_hub_still_delivers_at_its_exit(
    collector: CollectorHandle, tmp_path: Path
) -> None:
    collector.create_group(GROUP)
    run = run_host(host_script(tmp_path, PATCHED_AND_NEVER_WAITING), agent_env(collector, GROUP, tmp_path))

    run.assert_host_intact("done\n", 0)
    assert set(process_ids(assert_each_token_once(collector, GROUP))) == {run.pid}
