"""Keep the host's signals off the agent's threads.

Linux hands a signal sent to the process (``kill``, ``docker stop``, Ctrl-C from a terminal) to any
thread that does not block it. Python runs its handlers only on the main thread, and only once
that thread is back in the interpreter: if the kernel picks one of the agent's threads, the main
thread sleeping in ``time.sleep`` or a blocking read is not woken, and a program whose SIGTERM
handler should end it at once goes on sleeping. Each agent thread therefore blocks every signal a
program may handle as its first act, so the kernel delivers them to the host's own threads, as it
would with no agent loaded. Faults raised by the thread itself (SIGSEGV and the like) are left
alone: blocking them would turn a crash report into a hang.

This uses ``_signal``, the C module the interpreter loads at start-up, not ``signal``: importing
that one (it builds enums) would cost the agent's threads a millisecond, and more under a busy
host, before their first sample.
"""

import _signal
import threading
from typing import Final, FrozenSet

_UNBLOCKED_NAMES: Final = (
    "SIGSEGV",
    "SIGBUS",
    "SIGFPE",
    "SIGILL",
    "SIGTRAP",
    "SIGSYS",
    "SIGABRT",
    "SIGKILL",
    "SIGSTOP",
)
"""Signals a thread raises against itself, or that cannot be blocked: never masked."""
_UNBLOCKED: Final[FrozenSet[int]] = frozenset(
    number for number in (getattr(_signal, name, None) for name in _UNBLOCKED_NAMES) if number is not None
)


def block_host_signals() -> bool:
    """Block, on the calling agent thread, every signal the host may want; False where unsupported.

    Never on the main thread, whose signals are the host's to receive.
    """
    if threading.current_thread() is threading.main_thread():
        return False
    pthread_sigmask = getattr(_signal, "pthread_sigmask", None)
    valid_signals = getattr(_signal, "valid_signals", None)
    if pthread_sigmask is None or valid_signals is None:  # Windows
        return False
    try:
        pthread_sigmask(_signal.SIG_BLOCK, valid_signals() - _UNBLOCKED)
    except Exception:  # an exotic platform: the host keeps the kernel's choice, and the agent runs on
        return False
    return True
