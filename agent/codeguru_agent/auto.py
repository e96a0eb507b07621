"""``import codeguru_agent.auto``: profile this process, configured by environment variables alone.

For code you would rather not edit beyond one import (or a ``sitecustomize.py``): the profiling
group, the region, local mode and every other option come from the ``AWS_CODEGURU_PROFILER_*``
variables. Without a group or a local directory it logs one WARNING and profiles nothing; it never
raises into the importer.
"""

from __future__ import annotations

from typing import Optional

from codeguru_agent.profiler import Profiler, start

profiler: Optional[Profiler] = start()
"""This process's profiler (check ``profiler.is_running()``), or None if it could not be built."""
