"""What a code position is called: module, class and function names, files, lines, synthetic frames.

Resolved once per code object or per (code, instruction offset) and cached by the sampler, so the
hot path never computes a name, never reads ``f_locals`` (except botocore's ``_api_call`` frames,
whose operation name lives only there), and never reads a source file.
"""

import os
import sys
import types
from typing import TYPE_CHECKING, Dict, Final, FrozenSet, List, Mapping, NamedTuple, Optional, Sequence, Tuple

if TYPE_CHECKING:
    import dis

# Annotations here are evaluated, not strings (no ``from __future__ import annotations``): a
# NamedTuple compiles each string annotation, and the sampling thread imports this module before
# its first sample.


class Frame(NamedTuple):
    """One resolved frame of a stack: its key in the call graph, and where it is, if known."""

    name: str
    file: Optional[str] = None
    line: Optional[int] = None


SLEEP: Final = Frame("<Sleep>")
QUEUE_GET: Final = Frame("<queue.get>")
LXML_SCHEMA: Final = Frame("lxml.etree:XMLSchema:__init__")
TRUNCATED: Final = Frame("<Truncated>")

RESUMABLE_FLAGS: Final = 0x20 | 0x80 | 0x100 | 0x200
"""``co_flags`` of generators, coroutines, iterable coroutines and async generators: code that another
caller can resume at the same offset, so its frame and offset do not pin the stack below it."""
_NAME_LOADS: Final = frozenset(
    {
        "LOAD_ATTR",
        "LOAD_METHOD",
        "LOAD_GLOBAL",
        "LOAD_NAME",
        "LOAD_DEREF",
        "LOAD_FAST",
        "LOAD_FROM_DICT_OR_GLOBALS",
        "LOAD_SUPER_ATTR",
        "IMPORT_NAME",
        "IMPORT_FROM",
    }
)
_CACHE_ENTRY_BYTES: Final = 120  # a file's entry in the module cache, its name aside
_INDEX_ENTRY_BYTES: Final = 100  # a module's entry in the file index: the dict's share, at most
_BOTO_CLIENT_SUFFIXES: Final = (os.sep + os.path.join("botocore", "client.py"), "/botocore/client.py")


def encodable(text: str) -> str:
    """``text`` as UTF-8 can carry it: a file name that is not UTF-8 on disk reaches Python with
    lone surrogates (``os.fsdecode``), which fail the JSON encoding of the whole profile and send
    Ion's C writer into an endless loop; each becomes U+FFFD instead."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


def is_boto_api_call(code: types.CodeType) -> bool:
    """botocore's generated client method, whose frame names the operation being called."""
    return code.co_name == "_api_call" and code.co_filename.endswith(_BOTO_CLIENT_SUFFIXES)


def boto_operation_frame(frame: types.FrameType, code: types.CodeType) -> Optional[Frame]:
    """``botocore.client:<Client>:<operation>`` for an ``_api_call`` frame, as the official agent names it.

    The operation is a closure variable, readable only through ``f_locals``; reading it here has no
    lasting effect because ``_api_call`` never deletes a local.
    """
    try:
        local_values = frame.f_locals
        operation = local_values.get("py_operation_name")
        client = local_values.get("self")
    except Exception:  # a frame being torn down can refuse; the plain frame is still recorded
        return None
    if not operation:
        return None
    client_name = type(client).__name__ if client is not None else "Client"
    return Frame(f"botocore.client:{client_name}:{operation}", code.co_filename, None)


def leaf_synthetic_frame(code: types.CodeType, offset: int) -> Optional[Frame]:
    """The synthetic child the official agent adds under a leaf frame blocked in a known call.

    The official agent reads the leaf's source line and looks for ``sleep(``; the same answer comes
    from the names the bytecode loads on that line up to the current instruction, with no file read.
    """
    names = _names_loaded_on_line(code, offset)
    if not names:
        return None
    if "sleep" in names:
        return SLEEP
    if "get" in names and "block" in _keyword_names_on_line(code, offset):
        return QUEUE_GET
    if "XMLSchema" in names and "etree" in names:
        return LXML_SCHEMA
    return None


def _line_instructions(code: types.CodeType, offset: int) -> List["dis.Instruction"]:
    """The instructions of the source line that holds ``offset``, up to and including it.

    ``dis`` is imported here, not with this module: the runner imports it after its first sample
    (see ``Runner._import_dis``) and only then turns synthetic leaves on.
    """
    import dis

    current: List[dis.Instruction] = []
    for instruction in dis.get_instructions(code):
        if instruction.offset > offset:
            break
        if _starts_line(instruction):
            current = []
        current.append(instruction)
    return current


def _starts_line(instruction: "dis.Instruction") -> bool:
    if sys.version_info >= (3, 13):
        return bool(instruction.starts_line) and instruction.line_number is not None
    return instruction.starts_line is not None


def _names_loaded_on_line(code: types.CodeType, offset: int) -> FrozenSet[str]:
    try:
        return frozenset(str(i.argval) for i in _line_instructions(code, offset) if i.opname in _NAME_LOADS)
    except Exception:  # bytecode of exotic origin (cython shims, odd versions): no synthetic frame
        return frozenset()


def _keyword_names_on_line(code: types.CodeType, offset: int) -> FrozenSet[str]:
    names: set[str] = set()
    try:
        for instruction in _line_instructions(code, offset):
            if isinstance(instruction.argval, tuple):
                names.update(str(value) for value in instruction.argval)
    except Exception:  # see _names_loaded_on_line
        return frozenset()
    return frozenset(names)


class ModuleNames:
    """File paths to dotted module names that stay right for packages, site-packages and scripts.

    Prefers the name a module was imported under (``sys.modules``); falls back to the longest
    ``sys.path`` entry that is a real path prefix. Both views are refreshed when they change.
    ``bytes`` estimates what both hold, for the sampler's memory bound.
    """

    def __init__(self) -> None:
        self._cache: Dict[str, str] = {}
        self._by_file: Dict[str, str] = {}
        self._modules_seen = -1
        self._index_bytes = 0
        self._cache_bytes = 0

    @property
    def bytes(self) -> int:
        return self._index_bytes + self._cache_bytes

    def bytes_to_resolve(self, filename: str) -> int:
        """At most what resolving ``filename`` adds: its cache entry, and a fresh index if one is due."""
        if filename in self._cache:
            return 0
        cost = _CACHE_ENTRY_BYTES + sys.getsizeof(filename)
        if not filename.startswith("<") and len(sys.modules) != self._modules_seen:
            cost += max(0, _INDEX_ENTRY_BYTES * len(sys.modules) - self._index_bytes)
        return cost

    def module_of(self, filename: str) -> str:
        name = self._cache.get(filename)
        if name is None:
            name = self._cache[filename] = self._resolve(filename)
            self._cache_bytes += _CACHE_ENTRY_BYTES + sys.getsizeof(name)
        return name

    def _resolve(self, filename: str) -> str:
        if filename.startswith("<"):
            return _pseudo_file_module(filename)
        if len(sys.modules) != self._modules_seen:
            self._index_modules()
        path = os.path.normcase(os.path.abspath(filename))
        name = self._by_file.get(path)
        if name is not None:
            return name
        return _module_from_sys_path(path, sys.path)

    def _index_modules(self) -> None:
        by_file: Dict[str, str] = {}
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if not isinstance(file, str) or not file.endswith(".py"):
                continue
            if name == "__main__":
                continue  # a script is named after its file, below, not "__main__"
            path = os.path.normcase(os.path.abspath(file))
            by_file[file if path == file else path] = name  # the module's own string when it is the same
        self._by_file = by_file
        self._index_bytes = sys.getsizeof(by_file) + sum(
            sys.getsizeof(path)
            for path, name in by_file.items()
            if path is not getattr(sys.modules.get(name), "__file__", None)
        )
        self._modules_seen = len(sys.modules)


def _pseudo_file_module(filename: str) -> str:
    """``<frozen importlib._bootstrap>`` is module ``importlib._bootstrap``; ``<string>`` stays as is."""
    if filename.startswith("<frozen ") and filename.endswith(">"):
        return filename[len("<frozen ") : -1]
    return filename


def _module_from_sys_path(path: str, search_path: Sequence[str]) -> str:
    best = ""
    for entry in search_path:
        if not isinstance(entry, str):
            continue
        root = os.path.normcase(os.path.abspath(entry or os.curdir))
        prefix = root if root.endswith(os.sep) else root + os.sep
        if path.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    relative = path[len(best) :] if best else path.lstrip(os.sep)
    stem, _ = os.path.splitext(relative)
    if stem.endswith(os.sep + "__init__"):
        stem = stem[: -len("__init__") - 1]
    return stem.replace(os.sep, ".").strip(".") or stem


class QualifiedNames:
    """``Class.method`` for a code object: ``co_qualname`` where it exists (3.11+).

    Before 3.11 the qualified name is found once per module by looking up which module-level
    function, class method, static or class method owns the code object; nested functions that
    cannot be found keep their plain name. ``f_locals['self']`` is never read.
    """

    def __init__(self) -> None:
        self._indexed_modules: Dict[str, Dict[types.CodeType, str]] = {}

    def qualname(self, code: types.CodeType, module_name: str) -> str:
        qualname: Optional[str] = getattr(code, "co_qualname", None)  # 3.11+
        if qualname is not None:
            return qualname
        index = self._indexed_modules.get(module_name)
        if index is None:
            index = self._indexed_modules[module_name] = _index_module_functions(module_name)
        return index.get(code, code.co_name)


def _index_module_functions(module_name: str) -> Dict[types.CodeType, str]:
    module = sys.modules.get(module_name)
    if module is None and module_name == _main_module_name():
        module = sys.modules.get("__main__")
    index: Dict[types.CodeType, str] = {}
    if module is None:
        return index
    pending: List[Tuple[str, object]] = [("", module)]
    seen: set[int] = set()
    while pending:
        prefix, owner = pending.pop()
        if id(owner) in seen:
            continue
        seen.add(id(owner))
        try:
            members = list(vars(owner).items())
        except TypeError:
            continue
        for name, value in members:
            for function in _functions_of(value):
                code = getattr(function, "__code__", None)
                if isinstance(code, types.CodeType):
                    index.setdefault(code, prefix + getattr(function, "__name__", code.co_name))
            if isinstance(value, type) and getattr(value, "__module__", None) in (module.__name__, module_name):
                pending.append((prefix + name + ".", value))
    return index


def _functions_of(value: object) -> Tuple[object, ...]:
    if isinstance(value, (staticmethod, classmethod)):
        return (value.__func__,)
    if isinstance(value, property):
        return tuple(f for f in (value.fget, value.fset, value.fdel) if f is not None)
    if isinstance(value, types.FunctionType):
        return (value,)
    return ()


def _main_module_name() -> Optional[str]:
    main = sys.modules.get("__main__")
    file = getattr(main, "__file__", None)
    if not isinstance(file, str):
        return None
    return os.path.splitext(os.path.basename(file))[0]


def frame_name(module: str, qualname: str) -> str:
    """The call-graph key ``module:Class:function``; nested-function context is kept as the owner."""
    qualname = qualname.replace(".<locals>", "")
    owner, _, function = qualname.rpartition(".")
    return f"{module}:{owner}:{function}" if owner else f"{module}:{function}"


# What a frame is to the launcher (``codeguru-agent run``, ``python -m codeguru_agent``): the
# program's stacks on the main thread start below the launcher's entry and runpy's frames, as they
# would under ``python app.py``; the launcher's own work and the agent's own wait are not sampled.
LAUNCHER: Final = 1
"""A frame of the launcher itself (its ``main``): above the program, or the launcher's own work."""
PROGRAM_ENTRY: Final = 2
"""The launcher's call into runpy: the frames below it, runpy's aside, are the program's."""
RUNPY: Final = 3
"""A frame of runpy, which finds and loads the program (left out just below the entry)."""
RUNPY_EXEC: Final = 4
"""runpy's ``_run_code``, which executes the program: its callee is the program's first frame."""
AGENT_WAIT: Final = 5
"""The agent's wait for its first sample: a stack through it is the agent's, never sampled."""
_LAUNCHER_MODULE: Final = "codeguru_agent.cli.run:"


def launcher_role(name: str) -> int:
    """A frame's role for the launcher by its call-graph name (0: none); read once per frame interned."""
    if name.startswith(_LAUNCHER_MODULE):
        function = name[len(_LAUNCHER_MODULE) :]
        return PROGRAM_ENTRY if function == "_execute" else LAUNCHER if function == "main" else 0
    if name.startswith("runpy:"):
        return RUNPY_EXEC if name == "runpy:_run_code" else RUNPY
    if name.startswith("codeguru_agent.") and name.endswith(":wait_for_sampling"):
        return AGENT_WAIT
    return 0


def program_stack(key: Tuple[int, ...], roles: Mapping[int, int]) -> Optional[Tuple[int, ...]]:
    """The program's part of a stack (frame ids, leaf first): ``key`` itself when no launcher frame
    is in it, the frames that runpy's ``_run_code`` called below the launcher's entry when there is,
    and None for a stack that is the launcher's or the agent's own (starting, waiting, loading the
    program, stopping)."""
    for index, frame_id in enumerate(key):
        role = roles.get(frame_id)
        if role in (AGENT_WAIT, LAUNCHER):
            return None
        if role == PROGRAM_ENTRY:
            end = index
            while end > 0 and roles.get(key[end - 1]) in (RUNPY, RUNPY_EXEC):
                end -= 1
            if end == index or roles.get(key[end]) != RUNPY_EXEC:
                return None
            return key[:end] or None
    return key
