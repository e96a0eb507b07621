"""A local directory as a sink: each profile a file, and at close the merged pages written beside them."""

from __future__ import annotations

import logging
import os
import re
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from codeguru_agent.files import write_atomically
from codeguru_agent.fleet import FleetIdentity
from codeguru_agent.reporting.encoding import EXTENSIONS, content_type_of, decode, extension_for
from codeguru_agent.reporting.sinks import Outcome, Result

logger = logging.getLogger(__name__)

PageWriter = Callable[[Sequence[Mapping[str, Any]], str, str, str], str]
"""Writes documents merged, as a format (``html``, ``collapsed``), to a path with a title; returns
the path written. The viewer's, given by the lifecycle: reporting does not import the viewer.
"""


class LocalSink:
    """Writes each profile to a file in a directory, and when closed a merged flame graph page and
    the same samples as collapsed stacks (for flamegraph.pl, speedscope or Pyroscope)."""

    def __init__(self, directory: str, group: Optional[str], write_pages: Optional[PageWriter]) -> None:
        """``write_pages`` None (in a forked child) leaves the pages to the process that started the program."""
        self.directory = directory
        self._group = re.sub(r"[^\w-]", "", group or "local") or "local"
        self._write_pages = write_pages
        self.flamegraph_path: Optional[str] = None
        self.collapsed_path: Optional[str] = None
        os.makedirs(directory, exist_ok=True)

    def submit(self, body: bytes, content_type: str, token: str) -> Result:
        stamp = time.strftime("%Y-%m-%dT%H-%M-%S", time.gmtime())
        name = f"profile-{self._group}-{stamp}-{os.getpid()}-{token[:8]}.{extension_for(content_type)}"
        path = os.path.join(self.directory, name)
        try:
            write_atomically(path, body)
        except OSError as error:
            return Result(Outcome.RETRY, f"cannot write {path}: {error}")
        return Result(Outcome.ACCEPTED)

    def configure(self, identity: FleetIdentity) -> Result:
        return Result(Outcome.ACCEPTED, answer=None)

    def create_group(self, compute_platform: str) -> Result:
        return Result(Outcome.ACCEPTED)

    def close(self) -> None:
        """Merge every profile in the directory (forked children's too) into one flame graph.

        A file that cannot be read or decoded (left by an earlier run, say) is skipped with a
        WARNING naming it; the flame graph shows every profile that can be read.
        """
        write_pages = self._write_pages
        if write_pages is None:
            return
        try:
            names = sorted(os.listdir(self.directory))
        except OSError as error:  # the directory removed or made unreadable while the program ran
            logger.warning("no flame graph: cannot list %s: %s", self.directory, error)
            return
        documents = []
        for name in names:
            if name.startswith("profile-") and name.rsplit(".", 1)[-1] in EXTENSIONS.values():
                document = self._read_profile(os.path.join(self.directory, name))
                if document is not None:
                    documents.append(document)
        if not documents:
            return
        out = os.path.join(self.directory, "flamegraph.html")
        try:
            self.flamegraph_path = write_pages(documents, out, self._group, "html")
            stacks = os.path.join(self.directory, "collapsed-stacks.txt")
            self.collapsed_path = write_pages(documents, stacks, self._group, "collapsed")
        except Exception as error:  # a full disk or a bad directory must not reach the host
            logger.warning("cannot write the flame graph %s: %s", out, error)

    def _read_profile(self, path: str) -> Optional[Mapping[str, Any]]:
        """One profile document from the directory, or None after a WARNING naming the file."""
        try:
            with open(path, "rb") as file:
                document = decode(file.read(), content_type_of(path.rsplit(".", 1)[-1]))
        except Exception as error:  # unreadable or not JSON/Ion: whatever it is, it is not ours to read
            logger.warning("flame graph: skipped %s, which cannot be read as a profile: %s", path, error)
            return None
        if not isinstance(document, dict) or not isinstance(document.get("callgraph", {}), dict):
            logger.warning("flame graph: skipped %s, which is not a profile document", path)
            return None
        return document
