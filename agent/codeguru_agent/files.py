"""Files written whole or not at all: the one atomic write of the agent, its spool and its pages."""

from __future__ import annotations

import os


def write_atomically(path: str, data: bytes, durable: bool = False) -> None:
    """Write ``data`` beside ``path`` and rename it into place, so no reader (a browser, another
    process sharing the directory) ever sees half a file; with ``durable``, it is on disk before
    the rename, so a crash cannot leave an empty file under the final name either.

    The temporary name ends in ``.tmp`` and carries the pid: readers of the directory skip it, and
    two processes writing the same name never share one. It is removed if the write fails.
    """
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            if durable:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
