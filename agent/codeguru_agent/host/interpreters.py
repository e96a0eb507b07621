"""Other interpreters in the process: while any exists, no thread's frames may be read.

From Python 3.12 an interpreter can have a GIL and a memory allocator of its own (``_interpreters``,
``_xxsubinterpreters`` and ``concurrent.interpreters`` make them so). ``sys._current_frames()``
reports the threads of every interpreter, and to do so it creates a frame object for each of their
running frames with the calling interpreter's allocator and without their GIL; the other
interpreter later frees that object with its own allocator, and the process aborts ("free():
invalid pointer"). A thread that does nothing but call ``sys._current_frames()`` is enough. So the
agent asks for the threads' frames only while the main interpreter is alone; the sampling thread
skips its ticks meanwhile and counts them.

Before 3.12 every interpreter shares one GIL and one allocator, and reading their frames is safe.
"""

from __future__ import annotations

import sys
import types
from typing import Any, Callable, Dict, Final, Optional, Tuple

_CREATORS: Final[Tuple[str, ...]] = ("_interpreters", "_xxsubinterpreters", "_testinternalcapi", "_testcapi")
"""The modules through which Python code can make an interpreter with its own GIL: none loaded,
none made (C code embedding Python makes legacy interpreters, which share the main GIL)."""
_LISTERS: Final[Tuple[str, ...]] = ("_interpreters", "_xxsubinterpreters")
"""The modules that list every interpreter of the process, by Python version (3.13+, 3.12)."""
_OWN_GIL: Final = sys.version_info >= (3, 12)


def others_exist() -> bool:
    """True while an interpreter other than the main one may run, with a GIL of its own.

    A few dictionary lookups while none of the modules that make such interpreters is loaded (every
    tick pays this); a call that lists the interpreters once one is.
    """
    if not _OWN_GIL:
        return False
    modules = sys.modules
    for name in _CREATORS:
        if name in modules:
            break
    else:
        return False
    lister = _lister(modules)
    if lister is None:  # an interpreter could exist that nothing can see: assume it does
        return True
    try:
        return len(lister.list_all()) > 1
    except Exception:  # a changed private API: the safe answer
        return True


def _lister(modules: Dict[str, Any]) -> Optional[Any]:
    for name in _LISTERS:
        module = modules.get(name)
        if module is not None:
            return module
    for name in _LISTERS:
        try:
            return __import__(name)
        except ImportError:
            continue
    return None


def _current_frames_checked() -> Optional[Dict[int, types.FrameType]]:
    """``sys._current_frames()``, or None while other interpreters exist and it would harm them.

    An interpreter created between the check and the call would still be read: the window is the
    one thread switch the interpreter may make between two calls.
    """
    if others_exist():
        return None
    return sys._current_frames()


current_frames: Callable[[], Optional[Dict[int, types.FrameType]]] = (
    _current_frames_checked if _OWN_GIL else sys._current_frames
)
"""``sys._current_frames()``, or None while other interpreters exist and it would harm them; before
3.12 the C function itself, with no Python call around it on every tick."""
