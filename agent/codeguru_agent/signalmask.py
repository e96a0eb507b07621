"""Keep the host's signals off the agent's threads.

Linux hands a signal sent to the process (``kill``, ``docker stop``, Ctrl-C from a terminal) to any
thread that does not block it. Python runs its handlers only on the main thread, and only once
that thread is back in the interpreter: if the kernel picks one of the agent's threads, the main
thread sleeping in ``time.sleep`` or a blocking read is not woken, and a program whose SIGTERM
handler should end it at once goes on sleeping. Each agent thread therefore blocks every signal a
program may handle as its first act, so the kernel delivers them to the host's own threads, as it
would with no agent loaded. Faults raised by the thread itself (SIGSEGV and the like) are left
alone: blocking them would turn a crash report into a hang.
"""

import threading
from typing import Any, Final, FrozenSet

_SYNCHRONOUS: Final[FrozenSet[str]] = frozenset({"SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGTRAP", "SIGSYS",
                                                 "SIGABRT", "SIGKILL", "SIGSTOP"})
"""Signals a thread raises against itself (or that cannot be blocked): never masked."""


def block_host_signals() -> bool:
    """Block, on the calling agent thread, every signal the host may want; False where unsupported.

    Never on the main thread, whose signals are the host's to receive. ``signal`` is imported
    here, on the agent's thread, rather than by start() on the host's.
    """
    if threading.current_thread() is threading.main_thread():
        return False
    import signal

    pthread_sigmask = getattr(signal, "pthread_sigmask", None)
    valid_signals = getattr(signal, "valid_signals", None)
    if pthread_sigmask is None or valid_signals is None:  # Windows
        return False
    masked = {number for number in valid_signals() if _name(signal, number) not in _SYNCHRONOUS}
    try:
        pthread_sigmask(signal.SIG_BLOCK, masked)
    except Exception:  # an exotic platform: the host keeps the kernel's choice, and the agent runs on
        return False
    return True


def _name(signal: Any, number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # a real-time signal without a name: the host may use it, so it is masked
        return ""
