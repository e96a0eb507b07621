"""One tick: every thread's stack from ``sys._current_frames()``, counted flat by stack id.

This is the only code that runs while the agent holds the GIL on the host's time, so it is built
for that: frames are keyed on (code object, instruction offset) and resolved once; a thread whose
top frame stayed at the same offset for two ticks is counted without walking its stack for as long
as it stays there (the frame is then held, and freed at the first tick after it returns); a new
stack costs one tuple and one dict entry. Names, the call tree and the document are built later,
on the uploader's thread, from the sealed :class:`Aggregate`.

``sys._current_frames()`` also returns the sampler's own frame. Kept in the tick's locals until
the tick returns, it would make that frame own its locals and so sit in a reference cycle with
the other threads' frames; on CPython 3.12 collecting such a cycle while those threads still run
corrupts them (``SystemError: deallocated BytesIO object has exported buffers``, hung
``multiprocessing`` pools, crashes). So the sampler's own entry is dropped the moment it arrives.
"""

import _signal as _c_signal
import logging
import sys
import threading
import time
import types
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Collection,
    Dict,
    Final,
    FrozenSet,
    Iterable,
    List,
    Mapping,
    NamedTuple,
    Optional,
    Sequence,
    Set,
    Tuple,
)

from codeguru_agent.config import AgentConfig
from codeguru_agent.host import forksafe, interpreters, native
from codeguru_agent.sampling import frames as names
from codeguru_agent.sampling.frames import Frame
from codeguru_agent.sampling.greenlets import GreenletSampler
from codeguru_agent.sampling.tasks import TaskSampler

if TYPE_CHECKING:
    from codeguru_agent.sampling.timer import MainThreadTimer

logger = logging.getLogger(__name__)

StackKey = Tuple[int, ...]
"""Frame ids from the leaf (first) to the root (last)."""

# What each kind of entry costs, measured with tracemalloc on CPython 3.9 to 3.13 and set above it by
# the allocator's overhead seen in RSS (about a fifth), so that the estimate does not fall below
# what the process pays. A code object kept alive by the table is counted as the agent's: true of
# code generated at run time, an overstatement for module code that lives anyway.
_STACK_BYTES: Final = 260  # the key's tuple header, its dict entry, the list slots, the stack id's int, its head
_STACK_FRAME_BYTES: Final = 8  # one frame id's slot in the key
_CODE_BYTES: Final = 700  # a code entry, its positions dict, two dict slots, its name
_CODE_OBJECT_BYTES: Final = 450  # what sys.getsizeof misses of a code object: line and exception tables, locals' names
_QUALNAMES_BYTES: Final = 400  # before 3.11: the index of qualified names of the code's module, if new
_POSITION_BYTES: Final = 120  # an offset's entry in its code's positions (dict slot, offset's int)
_FRAME_BYTES: Final = 400  # a new Frame with its attribute dict, its id, the list and dict slots
_HEAD_SPAN: Final = 1 << 20
"""More than any key's length: a stack's head, ``key[0] * _HEAD_SPAN + len(key)``, is its leaf and
its length in one int."""
_LEAF_BYTES: Final = 150  # a leaf position's synthetic child (tuple key, dict slot)
_MAIN_BUSY_SHARE: Final = 0.02
"""Below this share of a tick's interval in CPU time, the main thread is taken to have waited."""
_SIGNAL_CPU_S: Final = 100e-6
"""More than a timer signal costs a waiting main thread (measured: 16 to 39 µs, benchmarks/README.md)."""
_MAIN_WINDOW_S: Final = 0.01
"""The main thread's CPU time is compared over this much time at least (a system call is enough to
cross 2% of a millisecond)."""
_MAIN_WINDOW_LIVE_S: Final = 0.02
"""The same while its timer runs: a window as long as ``_MAIN_IDLE_S`` stops the timer as soon as two
short ones did (its first wholly idle window), and at 100 ticks a second every other tick goes
without the system call that reads the main thread's CPU clock (5 to 16 µs of a cold tick)."""
_MAIN_IDLE_S: Final = 0.02
"""How long the main thread waits, tick after tick, before its timer stops (see ``_main_waited``):
longer than the waits between a program's short bursts of work, which the timer is there to see."""
_TIMER_CHECK_S: Final = 0.05
"""How often the tick makes sure the interval timer is still the one the agent set (a system call):
a program's ``signal.alarm()`` rings a second later at the soonest, long after."""
_SIGALRM: Final = getattr(_c_signal, "SIGALRM", 14)
_getsignal: Final[Callable[[int], Any]] = getattr(_c_signal, "getsignal", lambda signum: None)

_RESUMABLE_FLAGS: Final = names.RESUMABLE_FLAGS
_NO_POSITIONS: Final[Mapping[int, int]] = types.MappingProxyType({})
_SKIPPED: Final = ("skipped", -1, -1)
"""A thread's entry in ``Sampler._threads`` when it is never sampled."""
_MOVING: Final = ("moving", -1, -1)
"""A thread's entry when its stack is walked at every tick (a resumable top frame, or a leaf
still missing its synthetic child): known not to be skipped, never taken for parked."""


class _CodeEntry:
    """What the sampler knows of one code object; positions map offsets to frame ids."""

    __slots__ = ("boto", "code", "file", "name", "positions")

    def __init__(self, code: types.CodeType, name: str, file: str) -> None:
        self.code = code
        self.positions: Dict[int, int] = {}
        self.name = name
        self.file = file
        self.boto = names.is_boto_api_call(code)


class FrameTable:
    """Interns frames to small ids; append-only, so a sealed aggregate can read it from any thread.

    ``fast`` maps ``id(code)`` straight to that code's offset -> frame id dict, for the walk. An id
    stays its code's own because ``codes`` holds every code object it has seen; botocore's
    ``_api_call`` is left out of ``fast`` so that its operation frame is read on every walk.
    ``bytes`` is the estimate of what the table holds, grown with every entry.
    """

    def __init__(self) -> None:
        self.frames: List[Frame] = []
        self.bytes = 0
        self.codes: Dict[int, _CodeEntry] = {}
        self.fast: Dict[int, Dict[int, int]] = {}
        self.leaf_children: Dict[Tuple[int, int], int] = {}  # (id(code), offset) -> synthetic child id, or -1
        self._ids: Dict[Frame, int] = {}
        self.roles: Dict[int, int] = {}
        """Frame ids of the launcher's and the agent's frames, with their role (``frames.launcher_role``)."""
        self._modules = names.ModuleNames()
        self._qualnames = names.QualifiedNames()
        self.truncated_id = self.intern(names.TRUNCATED)
        for synthetic in (names.SLEEP, names.QUEUE_GET, names.LXML_SCHEMA):
            self.intern(synthetic)

    def intern(self, frame: Frame) -> int:
        frame_id = self._ids.get(frame)
        if frame_id is None:
            frame_id = self._ids[frame] = len(self.frames)
            self.frames.append(frame)
            self.bytes += _FRAME_BYTES
            role = names.launcher_role(frame.name)
            if role:
                self.roles[frame_id] = role
        return frame_id

    def frame_id(self, frame: Frame) -> Optional[int]:
        """The id of a frame already interned."""
        return self._ids.get(frame)

    def code_bytes(self, code: types.CodeType) -> int:
        """What :meth:`add_code` will add for ``code``, at most."""
        return code_bytes(code) + self._modules.bytes_to_resolve(code.co_filename)

    def add_code(self, code: types.CodeType) -> _CodeEntry:
        modules_bytes = self._modules.bytes
        module = names.encodable(self._modules.module_of(code.co_filename))
        name = names.frame_name(module, self._qualnames.qualname(code, module))
        entry = self.codes[id(code)] = _CodeEntry(code, name, names.encodable(code.co_filename))
        if not entry.boto:
            self.fast[id(code)] = entry.positions
        self.bytes += code_bytes(code) + self._modules.bytes - modules_bytes
        return entry

    def add_position(self, entry: _CodeEntry, offset: int, frame: Frame) -> int:
        frame_id = entry.positions[offset] = self.intern(frame)
        self.bytes += _POSITION_BYTES
        return frame_id

    def add_leaf_child(self, code: types.CodeType, offset: int) -> int:
        synthetic = names.leaf_synthetic_frame(code, offset)
        child = -1 if synthetic is None else self.intern(synthetic)
        self.leaf_children[(id(code), offset)] = child
        self.bytes += _LEAF_BYTES
        return child

    def __len__(self) -> int:
        return len(self.frames)


def code_bytes(code: types.CodeType) -> int:
    """What a new code entry costs: the entry, and the code object it keeps alive."""
    size = (
        _CODE_BYTES
        + _CODE_OBJECT_BYTES
        + sum(sys.getsizeof(part) for part in (code, code.co_consts, code.co_names, code.co_filename))
    )
    if sys.version_info < (3, 11):
        size += sys.getsizeof(code.co_code) + _QUALNAMES_BYTES  # 3.11 moved the bytecode in, and has co_qualname
    return size


class Aggregate(NamedTuple):
    """A sealed interval of samples: flat counts by stack, plus what the document needs."""

    start_ms: int
    end_ms: int
    duration_ms: int
    stacks: List[StackKey]
    counts: List[int]
    num_times_sampled: int
    threads_seen: int
    folded_stacks: int
    memory_bytes: int
    table: FrameTable
    skipped_ticks: int = 0
    """Ticks that read no frames because other interpreters were running (see host/interpreters.py)."""
    sampling_interval_ms: float = 0.0
    """The configured sampling interval the interval was sampled under (0: not known)."""
    task_samples: int = 0
    """Samples of asyncio tasks (units of work, not threads) among the counts."""
    greenlet_samples: int = 0
    """Samples of suspended greenlets among the counts."""
    unit_errors: int = 0
    """Ticks whose tasks or greenlets could not be read (the threads' samples were kept)."""
    timer_samples: int = 0
    """Samples of the main thread taken by its timer (``timer.py``) among the counts."""
    timer_fallbacks: int = 0
    """Ticks, while the timer was live, that took the main thread from the sampling thread's view
    because no timer sample had come for two ticks (the main thread in C code that holds the GIL or
    blocks the signal)."""
    timer_dropped: int = 0
    """Timer samples dropped: the deque was full, or the timer ran ahead of the ticks."""
    timer_off: Tuple[Tuple[str, int], ...] = ()
    """Why the main thread's timer was not used or given up since start, with counts (``timer.py``)."""
    ticks: int = 0
    """Ticks taken. ``num_times_sampled`` and the counts are in configured sampling intervals (a
    tick taken while the governor slowed down stands for several), so the rate achieved is this
    over the duration."""

    def resolved_stacks(self) -> Dict[Tuple[Frame, ...], int]:
        """Frame ids resolved into root-first frame stacks, with their counts (run this off the
        sampling thread). The samples left out (the empty key, see ``Sampler._left_out``) are not in it."""
        frames = self.table.frames
        stacks: Dict[Tuple[Frame, ...], int] = {}
        for key, count in zip(self.stacks, self.counts):
            if count and key:
                stack = tuple(frames[frame_id] for frame_id in reversed(key))
                stacks[stack] = stacks.get(stack, 0) + count
        return stacks


class Sampler:
    """Samples all threads but the agent's own into flat stack counts, within a memory bound.

    The bound covers the interval's stacks and the frame table alike, and is checked before
    anything is added: a position that would not fit is not interned, and the sample counts on its
    deepest known ancestor instead; a stack that would not fit counts on the deepest stack already
    known above it. Either way the sample is counted as folded, once.
    """

    def __init__(
        self,
        config: AgentConfig,
        *,
        clock: Callable[[], float] = time.time,
        current_frames: Callable[[], Optional[Dict[int, types.FrameType]]] = interpreters.current_frames,
    ) -> None:
        self._max_threads = config.max_threads
        self._excluded_names: FrozenSet[str] = config.excluded_threads
        self._interval_ms = config.sampling_interval_ms
        self._clock = clock
        """Wall-clock seconds; a C function, called at every tick for the interval's end."""
        self._current_frames = current_frames
        self._units = config.asyncio_tasks
        self._max_tasks = config.max_tasks
        self._tasks: Optional[TaskSampler] = None
        self._greenlets: Optional[GreenletSampler] = None
        self._agent_threads: Set[int] = set()
        self.timer: Optional[MainThreadTimer] = None
        """The main thread's timer, set by the runner: while it is live, the main thread's samples
        are the ones its handler recorded, and the tick's own view of that thread is left out."""
        self._timer_quiet = 0
        """Ticks in a row that drained no timer sample."""
        self._timer_owed: List[int] = []
        """The weights of the main thread samples the ticks so far are owed by the timer, oldest
        first (at most two)."""
        self.timer_wanted = True
        """Whether the main thread's timer should run: not while the main thread waits (the runner
        arms and disarms it after each tick)."""
        self._main_idle_since: Optional[float] = None
        """Since when the main thread has waited at every tick (None: it ran since the last tick)."""
        self._main_clock: Optional[Tuple[int, int]] = None
        """The main thread's ident and its CPU-time clock id (read while the timer is live, once a
        ``_MAIN_WINDOW_S`` has passed)."""
        self._main_cpu_s = self._main_seen_s = 0.0
        self._timer_checked_s = 0.0
        """When (``_end_s``'s clock) the timer was last checked in full (``MainThreadTimer.check``)."""
        self.timer_samples_taken = 0
        """Timer samples drained since the sampler began, counted or not: each one a signal the main
        thread paid for (the runner charges each to the budget)."""
        self._timer_dropped_seen = 0
        self._weight = 1
        """The current tick's weight (see :meth:`sample`), for the unit samplers' counts."""
        self._table = FrameTable()
        self._threads: Dict[int, Tuple[Any, ...]] = {}
        """Per thread ident, one entry for everything the tick needs to know of it: ``_SKIPPED``
        (an agent thread or an excluded name), or its top frame at the last tick (or, seen there
        once, only its address), the frame's offset and the stack id, and for a parked thread the
        total of the ticks' weights its count has reached (see :meth:`_settle`): see
        :meth:`sample`. One lookup per thread and tick, on a table the cold cache has to fetch
        after every sleep."""
        self._modules_seen = 0
        self._units_loaded = False
        """Whether asyncio or greenlet is loaded (the units pass), as of ``len(sys.modules)`` being
        ``_modules_seen``."""
        self._main_sampled: Optional[int] = None
        """The main thread's ident once its name was read and it is to be sampled: the timer's
        samples never pass through ``_threads``, so the tick would read its name again each time."""
        self._reset(int(self._clock() * 1000))
        self.set_limits(config)
        self.synthetic_leaves = True
        """Whether a new leaf position gets its synthetic child (``<Sleep>``, ...), read from its
        bytecode with ``dis``. The runner leaves it off until it has imported ``dis``, after its
        first sample: meanwhile a leaf has no child, and is looked at again on the next tick."""

    def set_limits(self, config: AgentConfig) -> None:
        """The interval, stack depth, thread bounds and memory bound, from the next sample on (the
        service's answer may change them; the runner seals the interval before, so that one
        interval is sampled under one set).

        Called on the sampling thread, between ticks. A thread whose stack would be reused from the
        last tick is walked again, so that the new depth applies to it too; the main thread's timer
        samples taken since the last tick are dropped, read as they were under the old depth (the
        next tick then sees the main thread itself, as at every interval's first tick).
        """
        self._interval_ms = config.sampling_interval_ms
        self._max_depth = config.max_stack_depth
        self._max_threads = config.max_threads
        self._excluded_names = config.excluded_threads
        self._memory_limit_bytes = int(config.memory_limit_mb * 2**20)
        # room kept for the one stack every sample can fold into when nothing above it is known
        self._budget_bytes = self._memory_limit_bytes - _STACK_BYTES - _STACK_FRAME_BYTES
        self._settle(list(self._threads), self._intervals_sampled, self._intervals_sampled)
        self._threads = {ident: _SKIPPED for ident in self._agent_threads}  # names are read again
        self._main_sampled = None
        if self.timer is not None:
            self.timer.samples.clear()

    def _reset(self, now_ms: int) -> None:
        self._stack_ids: Dict[StackKey, int] = {}
        self._heads: Set[int] = set()
        self._stacks: List[StackKey] = []
        self._counts: List[int] = []
        self._threads = {ident: _SKIPPED for ident in self._agent_threads}  # names are read again
        self._main_sampled = None
        self._start_ms = now_ms
        self._end_s = now_ms / 1000
        self._paused_ms = 0
        self._intervals_sampled = 0  # the ticks weighted by the configured intervals each stands for
        self._tick_count = 0
        self._threads_seen = 0
        self._folded = 0
        self._skipped = 0
        self._stack_bytes = 0
        self._task_samples = 0
        self._greenlet_samples = 0
        self._unit_errors = 0
        self._timer_samples = 0
        self._timer_fallbacks = 0
        self._timer_surplus = 0
        self._timer_owed = []

    def exclude_thread(self, ident: Optional[int]) -> None:
        """Never sample this thread (the agent's own threads register here)."""
        if ident is not None:
            self._agent_threads.add(ident)
            self._forget(ident, self._intervals_sampled)
            self._threads[ident] = _SKIPPED

    def _settle(self, idents: Iterable[int], through: int, since: int) -> None:
        """Count the parked threads among ``idents`` up to ``through`` (a total of the ticks'
        weights), and from now on from ``since``.

        A parked thread's entry holds the total its count has reached; the ticks it stays parked
        add nothing (a cold list slot and a new int per thread and tick, after every sleep), and
        what they owe it is added when it moves or ends, when the main thread's timer takes it
        over, when the units pass moves its sample, and at the seal and new limits.
        """
        threads, counts = self._threads, self._counts
        for ident in idents:
            entry = threads.get(ident)
            if entry is not None and len(entry) == 4:
                counts[entry[2]] += through - entry[3]
                threads[ident] = (*entry[:3], since)

    def _forget(self, ident: int, through: int) -> None:
        """Drop a thread's entry, counted up to ``through`` if it was parked."""
        self._settle((ident,), through, through)
        self._threads.pop(ident, None)

    def add_paused_time(self, paused_ms: int) -> None:
        """Time the profile was paused, kept out of its duration."""
        self._paused_ms += max(0, paused_ms)

    def sample(self, weight: int = 1) -> None:
        """One tick: count every sampled thread's current stack ``weight`` times (none while other
        interpreters run).

        ``weight`` is how many configured sampling intervals the tick stands for: more than one
        while the governor has slowed the ticks down. Every sample of a profile then weighs the same
        time, as its one ``sampleWeights`` figure says, although the rate moved within it; without
        it, a server whose busy spells slow the ticks down would show its busy work too small.

        Built for the cache the sleep left cold: the frames dict is iterated as it comes (no list
        of its items), and each thread costs one lookup in ``_threads``; a parked thread (its top
        frame the same object at the same offset) then costs one comparison, its count added when
        it moves or the interval ends (:meth:`_settle`).
        """
        self._weight = weight
        frames = self._current_frames()
        if frames is None:
            if not self._skipped:
                logger.info("other interpreters are running: threads are not sampled until they end")
            self._skipped += 1
            return
        me = native.get_ident()  # the OS thread's, whatever gevent patched into ``threading``
        frames.pop(me, None)  # see the module's note on the sampler's own frame
        timer = self.timer
        main: Optional[Tuple[int, types.FrameType]] = None
        if timer is not None and timer.live:
            main = self._count_timer_samples(timer, frames)
        items: Collection[Tuple[int, types.FrameType]] = frames.items()
        subset = False
        if len(frames) > self._max_threads + len(self._agent_threads):
            items = [item for item in items if item[0] not in self._agent_threads]
            if len(items) > self._max_threads:
                with forksafe.agent_import():  # only with more threads than max_threads, not before the first sample
                    import random

                items = random.sample(items, self._max_threads)
                subset = True
        threads = self._threads
        counts = self._counts
        skipped = 0
        counted = self._intervals_sampled  # the weights of the ticks before this one (see _settle)
        for ident, frame in items:
            previous = threads.get(ident)
            if previous is not None and previous[0] is frame and previous[1] == frame.f_lasti:
                continue  # parked: the same frame object at the same offset; counted when it moves
            if previous is _SKIPPED or (previous is None and self._classify(ident)):
                skipped += 1
                continue
            if previous is not None and len(previous) == 4:
                counts[previous[2]] += counted - previous[3]  # parked until the last tick: counted now
            lasti = frame.f_lasti
            stack_id = self._walk(frame, lasti)
            counts[stack_id] += weight
            if frame.f_code.co_flags & _RESUMABLE_FLAGS or not self.synthetic_leaves:
                # resumable: another caller can resume it at the same offset; or the leaf is
                # missing its synthetic child, which the next tick adds
                threads[ident] = _MOVING
            elif previous is not None and previous[0] == id(frame) and previous[1] == lasti and previous[2] == stack_id:
                # at the same place a whole interval: parked, so kept and never walked again while
                # it stays there (only the object itself tells it from a later call at its address);
                # counted through this tick, the next ones when it moves, ends or the interval ends
                threads[ident] = (frame, lasti, stack_id, counted + weight)
            else:
                # seen here once: by its address only, so that a frame that returns before the next
                # tick frees its locals when it returns, not an interval later
                threads[ident] = (id(frame), lasti, stack_id)
        if len(threads) > len(frames) + (me in threads):
            for ident in [ident for ident in threads if ident not in frames and ident != me]:
                self._forget(ident, counted)  # an ended thread, or the main thread its timer counts
        if subset:  # a parked thread left out of this tick is not owed it
            chosen = {ident for ident, _ in items}
            self._settle([ident for ident in threads if ident not in chosen], counted, counted + weight)
        if self._units and len(sys.modules) != self._modules_seen:
            # looked up again only when a module was added or removed: two lookups in a dict of a
            # thousand modules, cold, at every tick otherwise
            self._modules_seen = len(sys.modules)
            self._units_loaded = "asyncio.tasks" in sys.modules or "greenlet" in sys.modules
        if self._units_loaded:
            if main is not None and timer is not None:
                main = (main[0], timer.interrupted(main[1]))
            self._sample_units(items if main is None else [*items, main])
        self._intervals_sampled += weight
        self._tick_count += 1
        self._threads_seen += (len(items) - skipped + (main is not None)) * weight
        self._end_s = self._clock()

    def _count_timer_samples(
        self, timer: "MainThreadTimer", frames: Dict[int, types.FrameType]
    ) -> Optional[Tuple[int, types.FrameType]]:
        """Count the main thread's timer samples, and take the main thread out of ``frames``; returns
        it with its frame, for the units pass (None if it stays in ``frames``, where it is then as
        the handler found it: the tick reads the main thread's frame only when it needs it).

        The main thread keeps the weight of one sample per tick, as every other thread: a tick
        without a timer sample leaves it uncounted and owes it, with its weight, to the next tick
        (the timer runs on its own schedule, so the next tick usually brings two), and a tick
        counts at most the samples owed (the timer keeps its pace while a busy host delays the
        ticks). A second tick in a row without one means the handler cannot run (C code holding
        the GIL, the signal blocked): the main thread is then counted from ``frames`` like any
        other thread; so is it at an interval's first tick, which has no later tick to be paid by
        (a program's last interval, at its exit, may have only one).
        """
        ident = timer.ident
        if ident is None:
            return None
        # The full check (a system call) every _TIMER_CHECK_S; the handler's, a C call, every tick:
        # a handler the program installs gets none of the timer's signals after the next tick.
        end_s = self._end_s
        if end_s - self._timer_checked_s >= _TIMER_CHECK_S or _getsignal(_SIGALRM) is not timer.handler:
            self._timer_checked_s = end_s
            if not timer.check():  # a program that took SIGALRM or the timer: given up, said why
                return None
        table = self._table
        stack_ids = self._stack_ids
        if timer.stack_ids is not stack_ids:  # the handler reads the table and stacks the tick counts against
            timer.positions, timer.leaf_children = table.fast, table.leaf_children
            timer.truncated_id, timer.stack_ids = table.truncated_id, stack_ids
        samples = timer.samples
        drained: List[Any] = []
        for _ in range(len(samples)):  # only the main thread appends meanwhile: no sample is lost
            drained.append(samples.popleft())
        now_s = time.monotonic()
        window_s = _MAIN_WINDOW_LIVE_S if timer.interval_s else _MAIN_WINDOW_S
        if now_s - self._main_seen_s >= window_s or not self._main_seen_s:  # else it has nothing new
            idle_since = self._main_waited(ident, timer.interval_s, now_s)
        else:
            idle_since = self._main_idle_since
        if not timer.interval_s:  # stopped while the main thread waits: seen by the tick, as any thread
            self._timer_quiet = 0
            self._timer_owed = []
            self.timer_wanted = idle_since is None
            _unwrap_main(frames, ident, timer)
            return None
        if idle_since is not None and self._main_seen_s - idle_since >= _MAIN_IDLE_S and not timer.always_armed:
            self.timer_wanted = False
            self._main_seen_s = 0.0  # the signals' own cost is no sign of work: measure afresh
        owed = self._timer_owed + [self._weight]
        if not drained:
            self._timer_quiet += 1
            if (self._timer_quiet >= 2 or not self._intervals_sampled) and ident in frames:
                self._timer_fallbacks += 1
                self._timer_owed = []
                _unwrap_main(frames, ident, timer)
                return None
            self._timer_owed = owed[-2:]
            current = frames.pop(ident, None)
            return None if current is None else (ident, current)
        self._timer_quiet = 0
        self.timer_samples_taken += len(drained)
        if len(drained) > len(owed):  # the timer ran ahead of the ticks (late ticks): the newest samples count
            self._timer_surplus += len(drained) - len(owed)
            drained = drained[-len(owed) :]
        self._timer_owed = owed[len(drained) :]
        current = frames.pop(ident, None)
        if ident != self._main_sampled:
            known = self._threads.get(ident)
            if known is _SKIPPED or (known is None and self._classify(ident)):
                return None
            self._main_sampled = ident
        counts, positions = self._counts, table.fast
        for sample, weight in zip(drained, owed):  # each pays the oldest debt left, with its tick's weight
            if sample.__class__ is not tuple:
                stack_id = self._walk_captured(sample)  # frames the handler kept: a position to resolve
            elif sample[0] is stack_ids and sample[1] >= 0:
                stack_id = sample[1]
            elif sample[2] is positions:
                stack_id = self._stack_id(sample[3], False)  # a new stack, or one of an interval sealed since
            else:
                continue  # read against a frame table sealed since: its ids mean nothing now
            counts[stack_id] += weight
            self._timer_samples += weight
        return None if current is None else (ident, current)  # the units pass reads the live stack

    def _main_waited(self, ident: int, timer_interval_s: float, now_s: float) -> Optional[float]:
        """Since when the main thread has waited (None if it ran since the last tick): it used less
        than ``_MAIN_BUSY_SHARE`` of the time since each tick in CPU, blocked in a call (a socket, a
        lock, SQLite's busy wait) or idle; each signal of a timer running every ``timer_interval_s``
        is allowed ``_SIGNAL_CPU_S`` of the main thread's time more (the wake-up, a call's retry).

        Its timer then stops: each signal interrupts the call it waits in, and some C code that
        sleeps in steps counts the steps, not the time (SQLite's busy timeout ran out in an eighth
        of its time under a 10 ms timer); and the sampling thread sees a waiting thread where it
        is. It starts again at the first tick that finds the main thread running. One system call
        a window (``_MAIN_WINDOW_S``, ``_MAIN_WINDOW_LIVE_S`` while the timer runs; the caller waits
        for it to pass), on the sampling thread; never waiting where the thread's clock cannot be
        read. ``now_s``: the tick's ``time.monotonic()``.
        """
        try:
            if self._main_clock is None or self._main_clock[0] != ident:
                self._main_clock = (ident, time.pthread_getcpuclockid(ident))
            cpu_s = time.clock_gettime(self._main_clock[1])
        except (AttributeError, OSError, OverflowError):  # no per-thread clocks here: the timer stays
            return None
        if not self._main_seen_s:  # the first reading, or the timer just stopped: a new baseline
            self._main_cpu_s, self._main_seen_s = cpu_s, now_s
            return self._main_idle_since
        share = _MAIN_BUSY_SHARE + (_SIGNAL_CPU_S / timer_interval_s if timer_interval_s else 0.0)
        if cpu_s - self._main_cpu_s >= share * (now_s - self._main_seen_s):
            self._main_idle_since = None
        elif self._main_idle_since is None:
            self._main_idle_since = self._main_seen_s
        self._main_cpu_s, self._main_seen_s = cpu_s, now_s
        return self._main_idle_since

    def _sample_units(self, items: Iterable[Tuple[int, types.FrameType]]) -> None:
        """Count the suspended asyncio tasks and greenlets of the threads sampled this tick.

        Called only once asyncio or greenlet is loaded. Never raises: a loop that changed under the
        walk in some unforeseen way costs this tick's units (counted in ``unit_errors``), never the
        threads' samples already counted.
        """
        modules = sys.modules
        with_tasks = "asyncio.tasks" in modules
        with_greenlets = "greenlet" in modules
        known = self._threads
        threads = {ident: frame for ident, frame in items if known.get(ident) is not _SKIPPED}
        try:
            if with_tasks:
                if self._tasks is None:
                    self._tasks = TaskSampler(self._max_tasks)
                self._task_samples += self._tasks.sample(threads, self) * self._weight
            if with_greenlets:
                if self._greenlets is None:
                    self._greenlets = GreenletSampler(self._max_tasks)
                self._greenlet_samples += self._greenlets.sample(threads, self) * self._weight
        except Exception:  # see the docstring: the units of one tick are lost, nothing else
            self._unit_errors += 1
        finally:
            threads.clear()

    # --- the unit samplers' side (units.UnitCounter) -----------------------------------------------

    @property
    def max_depth(self) -> int:
        return self._max_depth

    @property
    def table(self) -> FrameTable:
        return self._table

    @property
    def truncated_id(self) -> int:
        return self._table.truncated_id

    def synthetic_id(self, frame: Frame) -> int:
        """The id of a synthetic frame (``<task ...>``), or -1 if the memory bound has no room for it."""
        table = self._table
        frame_id = table.frame_id(frame)
        if frame_id is None:
            if self._over(_FRAME_BYTES):
                return -1
            frame_id = table.intern(frame)
        return frame_id

    def frame_ids(self, frames: Sequence[types.FrameType]) -> Optional[List[int]]:
        """The position ids of ``frames`` (suspended ones too), in order; None if one does not fit."""
        fast = self._table.fast
        ids: List[int] = []
        for frame in frames:
            frame_id = fast.get(id(frame.f_code), _NO_POSITIONS).get(frame.f_lasti, -1)
            if frame_id >= 0:
                ids.append(frame_id)
            elif not self._resolve(frame, ids, False):
                self._folded += 1
                return None
        return ids

    def stack_below(self, frame: types.FrameType) -> Optional[Tuple[int, ...]]:
        """``frame`` and its callers, leaf first, within the depth bound; None if they do not fit."""
        frames: List[types.FrameType] = []
        caller: Optional[types.FrameType] = frame
        while caller is not None and len(frames) < self._max_depth:
            frames.append(caller)
            caller = caller.f_back
        ids = self.frame_ids(frames)
        if ids is None:
            return None
        if caller is not None:
            ids.append(self._table.truncated_id)
        return tuple(ids)

    def mark_thread(self, ident: int, top: types.FrameType, start: types.FrameType, frame_id: int) -> None:
        """Move this tick's sample of thread ``ident`` onto the same stack with ``frame_id`` inserted
        where ``start`` (a running task's outermost frame) begins. The thread's own stack id is found
        again by the same walk that counted it."""
        if self._threads.get(ident) is _SKIPPED or frame_id < 0 or start.f_back is None:
            return
        through = self._intervals_sampled + self._weight
        self._settle((ident,), through, through)  # a parked thread: this tick's sample counted first
        stack_id = self._walk(top, top.f_lasti)
        key = self._stacks[stack_id]
        below = self._program_key(self.stack_below(start.f_back))
        if (
            self._counts[stack_id] < self._weight
            or below is None
            or len(key) <= len(below)
            or key[-1] == self.truncated_id
        ):
            return
        cut = len(key) - len(below)
        if key[cut:] != below:
            return  # the thread moved on while this tick read it: its sample stays as it was
        self._counts[stack_id] -= self._weight
        self.count_unit(key[:cut] + (frame_id,) + key[cut:], 1)

    def count_unit(self, key: Sequence[int], weight: int) -> None:
        """Count ``weight`` samples of a task or greenlet on this key (leaf first), each of the tick's
        weight, within both bounds; under the launcher, without its frames (as the threads' stacks)."""
        if len(key) > self._max_depth:
            key = list(key[: self._max_depth - 1]) + [self._table.truncated_id]
        stack_key = self._program_key(tuple(key))
        if not stack_key:
            return
        stack_id = self._stack_ids.get(stack_key)
        if stack_id is None:
            cost = _STACK_BYTES + _STACK_FRAME_BYTES * len(stack_key)
            if self._stack_bytes + self._table.bytes + cost > self._budget_bytes:
                stack_id = self._fold(stack_key, False)
            else:
                stack_id = self._add_stack(stack_key, cost)
        self._counts[stack_id] += weight * self._weight

    def _program_key(self, key: Optional[StackKey]) -> Optional[StackKey]:
        """The program's part of a key (see ``frames.program_stack``); the key itself outside the launcher."""
        roles = self._table.roles
        return names.program_stack(key, roles) if key and roles else key

    def _classify(self, ident: int) -> bool:
        """Whether a thread seen for the first time (this interval) is to be skipped, remembered if so."""
        thread = threading._active.get(ident)  # type: ignore[attr-defined]
        if ident in self._agent_threads or (thread is not None and thread.name in self._excluded_names):
            self._threads[ident] = _SKIPPED
            return True
        return False

    def _walk(self, frame: types.FrameType, lasti: int) -> int:
        """The stack id of the stack under ``frame``, the thread's top frame, at offset ``lasti``.

        Every frame costs two dict lookups (its code, then its offset) and nothing else: a position
        not in the fast path reads as -1, and a key holding one is walked again by
        :meth:`_walk_resolving`, which interns it (or folds it) and reads botocore's operation.
        """
        table = self._table
        fast = table.fast
        positions = fast.get(id(frame.f_code), _NO_POSITIONS)
        frame_id = positions.get(lasti, -1)
        child = table.leaf_children.get((id(frame.f_code), lasti), -2)
        key = [child, frame_id] if child >= 0 else [frame_id]
        append = key.append
        caller = frame.f_back
        if caller is not None:
            for _ in range(self._max_depth - 1):
                append(fast.get(id(caller.f_code), _NO_POSITIONS).get(caller.f_lasti, -1))
                caller = caller.f_back
                if caller is None:
                    break
            else:
                append(table.truncated_id)
        del caller
        if frame_id < 0 or child == -2 or -1 in key:
            key, folded = self._walk_resolving(frame)
        else:
            folded = False
        return self._stack_id(key, folded)

    def _walk_captured(self, chain: Sequence[Any]) -> int:
        """The stack id of a stack the main thread's timer captured (``timer.py``): its frames and
        their offsets, leaf first, then None if the depth bound cut it.

        The frames may have moved on or returned since, and a generator's or coroutine's frame
        loses its caller when it suspends: so the chain is read as captured, never through
        ``f_back`` or the frames' current offsets.
        """
        table = self._table
        fast = table.fast
        leaf, lasti = chain[0], chain[1]
        frame_id = fast.get(id(leaf.f_code), _NO_POSITIONS).get(lasti, -1)
        child = table.leaf_children.get((id(leaf.f_code), lasti), -2)
        key = [child, frame_id] if child >= 0 else [frame_id]
        append = key.append
        end = min(len(chain) - 1, 2 * self._max_depth)
        for index in range(2, end, 2):
            append(fast.get(id(chain[index].f_code), _NO_POSITIONS).get(chain[index + 1], -1))
        cut = end < len(chain) - 1 or chain[-1] is None
        if cut:
            append(table.truncated_id)
        folded = False
        if frame_id < 0 or child == -2 or -1 in key:
            key = []
            for index in range(0, end, 2):
                if not self._resolve(chain[index], key, index == 0, chain[index + 1]):
                    folded = True
            if cut:
                key.append(table.truncated_id)
        return self._stack_id(key, folded)

    def _stack_id(self, key: List[int], folded: bool) -> int:
        """The id of the stack ``key`` (walked, and resolved where needed), added if it is new."""
        table = self._table
        stack_key = tuple(key)
        stack_id = self._stack_ids.get(stack_key)
        if stack_id is not None:
            if folded:
                self._folded += 1
            return stack_id
        if table.roles:
            program = names.program_stack(stack_key, table.roles)
            if program is not stack_key:
                return self._alias(stack_key, program, folded)
        cost = _STACK_BYTES + _STACK_FRAME_BYTES * len(stack_key)
        if folded or self._stack_bytes + table.bytes + cost > self._budget_bytes:
            return self._fold(stack_key, folded)
        return self._add_stack(stack_key, cost)

    def _walk_resolving(self, frame: types.FrameType) -> Tuple[List[int], bool]:
        """The stack's key when some position is new to the table, and whether the bound folded it."""
        key: List[int] = []
        folded = not self._resolve(frame, key, True)
        fast = self._table.fast
        for _ in range(self._max_depth - 1):
            frame = frame.f_back  # type: ignore[assignment]
            if frame is None:
                break
            frame_id = fast.get(id(frame.f_code), _NO_POSITIONS).get(frame.f_lasti, -1)
            if frame_id >= 0:
                key.append(frame_id)
            elif not self._resolve(frame, key, False):
                folded = True
        else:
            if frame.f_back is not None:
                key.append(self._table.truncated_id)
        return key, folded

    def _resolve(self, frame: types.FrameType, key: List[int], leaf: bool, offset: int = -1) -> bool:
        """Append the ids of a frame the fast path does not know; False, with ``key`` cleared, if
        its position does not fit in the bound (the sample then folds into the frame's ancestors).
        ``offset``: where the frame was when it was captured, if not where it is now.

        Runs for the leaf (its synthetic child), a new code object or offset, and botocore's
        ``_api_call`` (its operation frame).
        """
        table = self._table
        code = frame.f_code
        entry = table.codes.get(id(code))
        if entry is None:
            if self._over(table.code_bytes(code) + _POSITION_BYTES + _FRAME_BYTES):
                key.clear()
                return False
            entry = table.add_code(code)
        if offset < 0:
            offset = frame.f_lasti
        frame_id = entry.positions.get(offset)
        if frame_id is None:
            position = Frame(entry.name, entry.file, _line_at(frame, code, offset))
            frame_id = table.frame_id(position)
            if self._over(_POSITION_BYTES + (_FRAME_BYTES if frame_id is None else 0)):
                key.clear()
                return False
            frame_id = table.add_position(entry, offset, position)
        fits = True
        if leaf:
            child = table.leaf_children.get((id(code), offset))
            if child is None:
                if not self.synthetic_leaves:
                    child = -1  # not remembered: the next tick asks again
                elif self._over(_LEAF_BYTES):
                    child, fits = -1, False  # the synthetic child, if any, folds into its frame
                else:
                    child = table.add_leaf_child(code, offset)
            if child >= 0:
                key.append(child)
        key.append(frame_id)
        if entry.boto:
            operation = names.boto_operation_frame(frame, code)
            if operation is not None:
                operation_id = table.frame_id(operation)
                if operation_id is None and self._over(_FRAME_BYTES):
                    fits = False  # the operation frame folds into _api_call
                else:
                    key.append(table.intern(operation))
        return fits

    def _over(self, cost_bytes: int) -> bool:
        return self._stack_bytes + self._table.bytes + cost_bytes > self._budget_bytes

    def _fold(self, key: StackKey, folded: bool) -> int:
        """A new stack that lost frames to the bound, or that the bound has no room for: counted
        as it is if it fits, else on the deepest stack already known above it.

        Each ancestor's stack is looked up only if a known stack has its head (its leaf and its
        length): a set lookup per frame, where slicing and hashing every ancestor's key would cost
        the square of the depth, milliseconds per sample in a deep recursion once the bound is hit.
        """
        self._folded += 1
        cost = _STACK_BYTES + _STACK_FRAME_BYTES * len(key)
        if folded and key and not self._over(cost):
            return self._add_stack(key, cost)
        heads, length = self._heads, len(key)
        for cut in range(1, length):
            if key[cut] * _HEAD_SPAN + length - cut in heads:
                stack_id = self._stack_ids.get(key[cut:])
                if stack_id is not None:
                    return stack_id
        return self._fallback_stack()

    def _alias(self, key: StackKey, program: Optional[StackKey], folded: bool) -> int:
        """A new stack with the launcher's frames at its root, or the agent's own wait in it: counted
        as the program's part of it (``program``), or left out if it has none; ``key`` maps there
        from now on, so the next sample of it costs one lookup."""
        if program is None:
            stack_id = self._left_out()
        else:
            stack_id = self._stack_ids.get(program, -1)
            cost = _STACK_BYTES + _STACK_FRAME_BYTES * len(program)
            if stack_id >= 0:
                self._folded += folded
            elif folded or self._over(cost):
                return self._fold(program, folded)
            else:
                stack_id = self._add_stack(program, cost)
        if not self._over(_STACK_BYTES):
            self._stack_ids[key] = stack_id
            self._stack_bytes += _STACK_BYTES
        return stack_id

    def _left_out(self) -> int:
        """The stack whose samples no profile shows: its key is empty."""
        stack_id = self._stack_ids.get(())
        if stack_id is None:
            stack_id = self._stack_ids[()] = len(self._stacks)
            self._stacks.append(())
            self._counts.append(0)
        return stack_id

    def _fallback_stack(self) -> int:
        """The one stack a sample folds into when nothing above its leaf is known: ``<Truncated>``."""
        key = (self._table.truncated_id,)
        stack_id = self._stack_ids.get(key)
        if stack_id is None:
            stack_id = self._add_stack(key, _STACK_BYTES + _STACK_FRAME_BYTES)  # its room is kept in reserve
        return stack_id

    def _add_stack(self, key: StackKey, cost: int) -> int:
        stack_id = self._stack_ids[key] = len(self._stacks)
        self._heads.add(key[0] * _HEAD_SPAN + len(key))
        self._stacks.append(key)
        self._counts.append(0)
        self._stack_bytes += cost
        return stack_id

    def memory_bytes(self) -> int:
        """Estimated bytes held for the current interval and the frame cache."""
        return self._stack_bytes + self._table.bytes

    def seal(self, now_ms: Optional[int] = None) -> Aggregate:
        """Hand over this interval's samples and start a new interval; O(1) on the sampling thread."""
        now = int(self._clock() * 1000) if now_ms is None else now_ms
        end = int(self._end_s * 1000) if self._intervals_sampled else now
        self._settle(list(self._threads), self._intervals_sampled, self._intervals_sampled)
        aggregate = Aggregate(
            start_ms=self._start_ms,
            end_ms=end,
            duration_ms=max(0, now - self._start_ms - self._paused_ms),
            stacks=self._stacks,
            counts=self._counts,
            num_times_sampled=self._intervals_sampled,
            threads_seen=self._threads_seen,
            folded_stacks=self._folded,
            memory_bytes=self.memory_bytes(),
            table=self._table,
            skipped_ticks=self._skipped,
            sampling_interval_ms=self._interval_ms,
            task_samples=self._task_samples,
            greenlet_samples=self._greenlet_samples,
            unit_errors=self._unit_errors,
            timer_samples=self._timer_samples,
            timer_fallbacks=self._timer_fallbacks,
            ticks=self._tick_count,
            **self._timer_state(),
        )
        if self._table.bytes > self._memory_limit_bytes // 2:
            self._table = FrameTable()  # the frame cache outgrew half the bound: start it afresh
        self._reset(now)
        return aggregate

    def _timer_state(self) -> Dict[str, Any]:
        """The timer's drops this interval and its reasons for being off, for the sealed aggregate."""
        timer = self.timer
        if timer is None:
            return {}
        dropped, self._timer_dropped_seen = timer.dropped - self._timer_dropped_seen, timer.dropped
        dropped = max(0, dropped) + self._timer_surplus
        return {"timer_dropped": dropped, "timer_off": tuple(sorted(timer.reasons.items()))}

    @property
    def ticks(self) -> int:
        """Ticks taken in the current interval (not their weights)."""
        return self._tick_count


def _unwrap_main(frames: Dict[int, types.FrameType], ident: int, timer: "MainThreadTimer") -> None:
    """The main thread in ``frames`` where it was, not in the timer's handler, if the tick caught it
    there: the tick walks it as any other thread."""
    frame = frames.get(ident)
    if frame is not None:
        frames[ident] = timer.interrupted(frame)


def _line_at(frame: types.FrameType, code: types.CodeType, offset: int) -> Optional[int]:
    """The line of ``code`` at ``offset``: the frame's own if it is still there, else from the line
    table (a frame the main thread's timer captured may have moved on since)."""
    if offset == frame.f_lasti or not hasattr(code, "co_lines"):  # co_lines: Python 3.10 and later
        return frame.f_lineno
    for start, end, line in code.co_lines():
        if start <= offset < end:
            found: Optional[int] = line  # typed here: 3.9's stubs know no co_lines
            return found
    return frame.f_lineno
