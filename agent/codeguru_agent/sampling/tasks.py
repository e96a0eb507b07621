"""asyncio tasks as units of work: every suspended leaf task of a sampled loop counts one sample a tick.

``sys._current_frames()`` shows a loop thread idle in ``select`` or running one callback; the time a
request spends awaiting a database is in no thread's stack. So each tick, for each loop running on a
sampled thread, every live task that no other task awaits counts one sample on: the loop thread's
frames down to ``BaseEventLoop._run_once`` (shared by every task of the loop), ``<task NAME>``, the
await chain of each task from its parent's (``await task``, ``gather``, ``TaskGroup``) down to its
own innermost coroutine, and a leaf naming what it waits on (``<await sleep>``, ``<await Future>``).
The running task is in the thread's real stack: it is not walked again, its sample only gains the
same ``<task NAME>`` frame where its coroutine begins.

Read from another thread, so (measured on CPython 3.9 to 3.13, see the design notes): the registry is
read as a C-level copy of its underlying set, never by iterating a live ``WeakSet``; ``task._coro``,
never ``get_coro()`` (it crashes 3.12.1 for an eagerly finished task); attribute reads only, each of
which tolerates a chain the loop changed meanwhile; nothing held past the tick but ids and weak
references; and the caller catches anything that still goes wrong, so it never reaches the sampler.
"""

import gc
import sys
import types
import weakref
from typing import Any, Dict, Final, List, Mapping, Optional, Sequence, Set, Tuple

from codeguru_agent.sampling.frames import Frame
from codeguru_agent.sampling.units import UnitCounter, unit_frame, weighted_subset

MAX_CHAIN: Final = 64
"""Coroutines followed down one task's await chain; deeper ones are left out."""
MAX_PARENTS: Final = 32
"""Tasks followed up from a leaf task through the tasks awaiting it (also ends any cycle)."""
_CORO: Final = types.CoroutineType
_GEN: Final = types.GeneratorType
_AGEN: Final = types.AsyncGeneratorType
_WRAPPERS: Final = frozenset({"async_generator_asend", "async_generator_athrow", "coroutine_wrapper"})
"""Awaitables that hide the generator or coroutine they drive; ``gc.get_referents`` finds it."""


class _Chain:
    """A task's await chain as frame ids, kept while the task awaits the same future."""

    __slots__ = ("base", "coro_id", "ids", "key", "label_id", "task_id", "waiter")

    def __init__(
        self, coro_id: int, waiter: Optional["weakref.ref[Any]"], ids: Tuple[int, ...], task_id: int, label_id: int
    ) -> None:
        self.coro_id = coro_id
        self.waiter = waiter
        self.ids = ids
        self.task_id = task_id
        self.label_id = label_id
        self.base: Optional[Tuple[int, ...]] = None
        self.key: Tuple[int, ...] = ()
        """The whole stack key of a task no other task awaits, built on ``base``."""


class TaskSampler:
    """Counts the leaf tasks of every loop running on a sampled thread, at most ``max_tasks`` a loop."""

    def __init__(self, max_tasks: int) -> None:
        self._max_tasks = max_tasks
        self._chains: Dict[int, _Chain] = {}
        self._groups: Dict[int, Tuple[weakref.ref[Any], Optional[weakref.ref[Any]]]] = {}
        """``id(task)`` -> the task, and the task whose TaskGroup it belongs to: read once per task."""
        self._bases: Dict[int, Tuple[int, ...]] = {}
        """``id(loop)`` -> its base stack key at the last tick: kept as the same object while equal."""
        self._frame_ids: Dict[Frame, int] = {}
        self._table: object = None
        self._loop_threads: Dict[int, int] = {}
        """``id(loop)`` -> thread ident, for loops with no ``_thread_id`` (uvloop): learnt from the
        thread whose stack runs one of the loop's tasks."""
        self.walked = 0
        self.reused = 0

    def sample(self, threads: Mapping[int, types.FrameType], counter: UnitCounter) -> int:
        """Count this tick's task samples on ``counter``; returns how many were counted."""
        tasks_module = sys.modules.get("asyncio.tasks")
        if tasks_module is None:
            return 0
        if counter.table is not self._table:  # a new frame table: every cached id is stale
            self._table = counter.table
            self._chains.clear()
            self._frame_ids.clear()
            self._bases.clear()
        loops: Dict[int, Tuple[Any, List[Any]]] = {}
        for task in _snapshot(tasks_module, threads):
            if not task.done():
                loop = task._loop
                entry = loops.get(id(loop))
                if entry is None:
                    entry = loops[id(loop)] = (loop, [])
                entry[1].append(task)
        counted = 0
        seen: Set[int] = set()
        current_tasks = getattr(tasks_module, "_current_tasks", None) or {}
        for loop, loop_tasks in loops.values():
            current = current_tasks.get(loop)
            ident = self._thread_of(loop, current, threads)
            if ident is not None:
                counted += self._sample_loop(ident, threads[ident], loop_tasks, current, counter, tasks_module, seen)
        for cache in (self._chains, self._groups):
            if len(cache) > len(seen):
                for task_id in [task_id for task_id in cache if task_id not in seen]:
                    del cache[task_id]
        if len(self._loop_threads) > len(loops):
            self._loop_threads = {key: ident for key, ident in self._loop_threads.items() if key in loops}
        if len(self._bases) > len(loops):
            self._bases = {loop_id: base for loop_id, base in self._bases.items() if loop_id in loops}
        return counted

    def _thread_of(self, loop: Any, current: Any, threads: Mapping[int, types.FrameType]) -> Optional[int]:
        """The sampled thread that runs ``loop``, or None (a loop that is not running, or not sampled)."""
        ident = getattr(loop, "_thread_id", None)
        if ident is None:
            known = self._loop_threads.get(id(loop))
            if current is not None:
                outermost = _outermost_frame(current._coro)
                for thread_ident, frame in threads.items():
                    if _in_stack(outermost, frame):
                        known = self._loop_threads[id(loop)] = thread_ident
                        break
            ident = known
        return ident if ident in threads else None

    def _sample_loop(
        self,
        ident: int,
        top: types.FrameType,
        loop_tasks: List[Any],
        current: Any,
        counter: UnitCounter,
        tasks_module: Any,
        seen: Set[int],
    ) -> int:
        running = _outermost_frame(current._coro) if current is not None else None
        if running is not None and (running.f_back is None or not _in_stack(running, top)):
            # the loop's current task is not on this thread's stack (or has just yielded: the loop
            # can run while this tick reads): walked as any other task
            running, current = None, None
        run_once: Optional[types.FrameType] = None
        frame = running.f_back if running is not None else top
        while frame is not None:
            if frame.f_code.co_name == "_run_once":
                run_once = frame
                break
            frame = frame.f_back
        del frame
        base_frame = run_once or (running.f_back if running is not None else None) or top
        base = counter.stack_below(base_frame)
        if base is None:
            return 0
        loop_id = id(loop_tasks[0]._loop)
        if self._bases.get(loop_id) == base:
            base = self._bases[loop_id]
        else:
            self._bases[loop_id] = base
        running_ids: Optional[List[int]] = None
        running_task_id = -1
        if running is not None:
            running_task_id = self._synthetic(counter, unit_frame("task", _task_name(current)))
            counter.mark_thread(ident, top, running, running_task_id)
        live = {id(task): task for task in loop_tasks}
        seen.update(live)  # a task left out of this tick's subset keeps its cached chain
        parents = self._parents(loop_tasks, live)
        awaited = {id(parent) for parent in parents.values()}
        leaves = [task for task in loop_tasks if id(task) not in awaited and task is not current]
        sleep_code = getattr(getattr(tasks_module, "sleep", None), "__code__", None)
        counted = 0
        for leaf, weight in weighted_subset(leaves, self._max_tasks):
            if id(leaf) not in parents:  # awaited by no task: its whole key is reused while nothing moved
                chain = self._chain(leaf, counter, live, sleep_code)
                if chain.base is not base:
                    head = (chain.label_id,) if chain.label_id >= 0 else ()
                    chain.key = head + chain.ids + (chain.task_id,) + base
                    chain.base = base
                counter.count_unit(chain.key, weight)
                counted += weight
                continue
            key: List[int] = []
            task: Any = leaf
            for _ in range(MAX_PARENTS):
                if task is current:
                    if running_ids is None:
                        running_ids = self._running_ids(top, running, counter)
                    key.extend(running_ids)
                    key.append(running_task_id)
                else:
                    chain = self._chain(task, counter, live, sleep_code)
                    if task is leaf and chain.label_id >= 0:
                        key.append(chain.label_id)
                    key.extend(chain.ids)
                    key.append(chain.task_id)
                task = parents.get(id(task))
                if task is None:
                    break
            key.extend(base)
            counter.count_unit(key, weight)
            counted += weight
        return counted

    def _parents(self, loop_tasks: Sequence[Any], live: Mapping[int, Any]) -> Dict[int, Any]:
        """``id(task)`` -> the task awaiting it: through ``await task``, ``gather`` and ``TaskGroup``.

        ``await task`` and ``gather`` show in the parent's awaited future (the task, or a future with
        ``_children``); a TaskGroup child only in its own done-callbacks, where the group's bound
        method knows the parent task: read once per task, as a task never changes group.
        """
        parents: Dict[int, Any] = {}
        gathering = getattr(sys.modules.get("asyncio.tasks"), "_GatheringFuture", None)
        for task in loop_tasks:
            waiter = task._fut_waiter
            if waiter is None:
                continue
            if id(waiter) in live:
                parents[id(waiter)] = task
            elif type(waiter) is gathering:  # not getattr(waiter, "_children"): a miss costs an exception
                for child in waiter._children:
                    if id(child) in live:
                        parents[id(child)] = task
        if "asyncio.taskgroups" not in sys.modules:
            return parents
        groups = self._groups
        for task in loop_tasks:
            if id(task) in parents:
                continue
            known = groups.get(id(task))
            if known is None or known[0]() is not task:
                known = groups[id(task)] = (weakref.ref(task), _group_parent(task))
            parent = known[1]() if known[1] is not None else None
            if parent is not None and id(parent) in live:
                parents[id(task)] = parent
        return parents

    def _running_ids(self, top: types.FrameType, running: Optional[types.FrameType], counter: UnitCounter) -> List[int]:
        """The running task's frames (its tasks' parent frames), from the thread's real stack."""
        frames: List[types.FrameType] = []
        frame: Optional[types.FrameType] = top
        while frame is not None and len(frames) < counter.max_depth:
            frames.append(frame)
            if frame is running:
                break
            frame = frame.f_back
        return counter.frame_ids(frames) or []

    def _chain(self, task: Any, counter: UnitCounter, live: Mapping[int, Any], sleep_code: Any) -> _Chain:
        """The task's await chain, reused while the task awaits the same future as at the last tick."""
        coro = task._coro
        waiter = task._fut_waiter
        chain = self._chains.get(id(task))
        if (
            chain is not None
            and waiter is not None
            and chain.coro_id == id(coro)
            and chain.waiter is not None
            and chain.waiter() is waiter
        ):
            self.reused += 1
            return chain
        self.walked += 1
        frames = _await_frames(coro)
        innermost = frames[-1].f_code if frames else None
        frames.reverse()
        ids = counter.frame_ids(frames) or []
        del frames
        label = _awaited(waiter, innermost, live, sleep_code)
        label_id = -1 if label is None else self._synthetic(counter, Frame(f"<await {label}>"))
        task_id = self._synthetic(counter, unit_frame("task", _task_name(task, coro)))
        try:
            reference: Optional[weakref.ref[Any]] = None if waiter is None else weakref.ref(waiter)
        except TypeError:  # an awaitable without weak references: walked again at every tick
            reference = None
        chain = self._chains[id(task)] = _Chain(id(coro), reference, tuple(ids), task_id, label_id)
        return chain

    def _synthetic(self, counter: UnitCounter, frame: Frame) -> int:
        frame_id = self._frame_ids.get(frame)
        if frame_id is None:
            frame_id = counter.synthetic_id(frame)
            if frame_id < 0:
                return counter.truncated_id
            self._frame_ids[frame] = frame_id
        return frame_id


def _snapshot(tasks_module: Any, threads: Mapping[int, types.FrameType]) -> List[Any]:
    """Every task of the process, read without iterating a live ``WeakSet`` (it raises "Set changed
    size" while the loop adds tasks): ``list()`` of its underlying set is one C-level copy."""
    registry = getattr(tasks_module, "_all_tasks", None)  # 3.9 to 3.11
    if registry is None:
        registry = getattr(tasks_module, "_scheduled_tasks", None)  # 3.12, 3.13 (with _eager_tasks)
    data = getattr(registry, "data", None)
    if data is not None:
        tasks = [task for task in (reference() for reference in list(data)) if task is not None]
        tasks.extend(list(getattr(tasks_module, "_eager_tasks", ())))
        return tasks
    tasks = []
    for loop in _running_loops(threads):
        tasks.extend(tasks_module.all_tasks(loop))  # 3.14 and later: documented safe from any thread
    return tasks


def _running_loops(threads: Mapping[int, types.FrameType]) -> List[Any]:
    """Loops found where a sampled thread runs ``run_forever``: for Pythons whose registry is not
    exported. Reads ``f_locals``, a read-only view from 3.13 on (before, it would write the frame)."""
    if sys.version_info < (3, 13):
        return []
    loops = []
    for top in threads.values():
        frame: Optional[types.FrameType] = top
        while frame is not None:
            if frame.f_code.co_name == "run_forever" and frame.f_code.co_filename.endswith("base_events.py"):
                loop = frame.f_locals.get("self")
                if loop is not None:
                    loops.append(loop)
                break
            frame = frame.f_back
    return loops


def _group_parent(task: Any) -> Optional["weakref.ref[Any]"]:
    """The task whose TaskGroup ``task`` belongs to, held weakly, from the group's done-callback."""
    for callback in task._callbacks or ():
        group = getattr(callback[0], "__self__", None)
        if type(group).__name__ == "TaskGroup":
            parent = getattr(group, "_parent_task", None)
            return None if parent is None else weakref.ref(parent)
    return None


def _await_frames(coro: Any) -> List[types.FrameType]:
    """The frames of a suspended coroutine's await chain, outermost first; empty once it finished."""
    frames: List[types.FrameType] = []
    awaitable = coro
    for _ in range(MAX_CHAIN):
        kind = type(awaitable)
        if kind is _CORO:
            frame, awaitable = awaitable.cr_frame, awaitable.cr_await
        elif kind is _GEN:
            frame, awaitable = awaitable.gi_frame, awaitable.gi_yieldfrom
        elif kind is _AGEN:
            frame, awaitable = awaitable.ag_frame, awaitable.ag_await
        elif kind.__name__ in _WRAPPERS:
            awaitable = _driven(awaitable)
            continue
        else:
            break
        if frame is None:
            break
        frames.append(frame)
    return frames


def _driven(wrapper: Any) -> Any:
    """The generator or coroutine an ``asend`` object or a coroutine wrapper drives, or None."""
    for referent in gc.get_referents(wrapper):
        if type(referent) in (_CORO, _GEN, _AGEN):
            return referent
    return None


def _outermost_frame(coro: Any) -> Optional[types.FrameType]:
    kind = type(coro)
    frame: Optional[types.FrameType] = None
    if kind is _CORO:
        frame = coro.cr_frame
    elif kind is _GEN:
        frame = coro.gi_frame
    return frame


def _in_stack(target: Optional[types.FrameType], top: Optional[types.FrameType]) -> bool:
    while target is not None and top is not None:
        if top is target:
            return True
        top = top.f_back
    return False


def _awaited(
    waiter: Any, innermost: Optional[types.CodeType], live: Mapping[int, Any], sleep_code: Any
) -> Optional[str]:
    """What a suspended task waits on, for its leaf frame: ``sleep``, ``Task``, ``gather``, the future's type."""
    if innermost is not None and innermost is sleep_code:
        return "sleep"
    if waiter is None:
        return None  # scheduled to run: it waits on nothing but its turn
    if id(waiter) in live:
        return "Task"
    if type(waiter).__name__ == "_GatheringFuture":
        return "gather"
    return type(waiter).__name__


def _task_name(task: Any, coro: Any = None) -> str:
    """The program's name for the task; for a default ``Task-N``, its coroutine's qualified name."""
    name = task.get_name()
    if name.startswith("Task-") and name[5:].isdigit():
        if coro is None:
            coro = task._coro
        name = str(getattr(coro, "__qualname__", None) or name).replace(".<locals>", "")
    return str(name)
