"""Deadlines on the event loop: a min-heap checked once per poll round.

gnet has no counterpart: its users have asked for per-connection timeouts
since 2019 (panjf2000/gnet#43, #83, #206, #277) and v2's ``SetDeadline``
returns ``ErrUnsupportedOp``. The design is redis ``ae``'s and libuv's: the
loop keeps its timers in a heap, bounds each ``epoll_wait`` by the earliest
deadline, and runs what is due after each round. No thread per connection,
no timer fd.

Bounded by construction (issue 17). A connection keeps at most one live
entry per purpose (idle, deadline). Moving a deadline *later* touches no
heap at all: the armed entry, when it fires, sees the new time and re-arms
itself there (the "lazy re-arm" that makes "reset the idle timer" a plain
attribute store on the hot path). Moving it *earlier* cancels the armed
entry and pushes one new one. A cancelled entry drops its callback and
arguments at once, so it keeps nothing alive (a closed connection's entries
are cancelled by ``Conn.mark_closed``), and the heap is compacted as soon as
cancelled entries are more than half of it, so the heap never holds more
than twice the live entries plus ``COMPACT_MIN``.

Invariant: ``now`` is the loop's monotonic clock as of the end of the last
``epoll_wait``; callbacks and the hot path read it instead of calling
``time.monotonic()`` per event.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from typing import Any

__all__ = ["COMPACT_MIN", "Timer", "TimerQueue"]

#: An entry: ``[deadline, seq, fn, args]``, a list so that ``cancel`` can clear
#: ``fn``/``args`` in place. Lists compare element by element in C, and
#: ``seq`` is unique, so the heap never compares callables (a class with a
#: Python ``__lt__`` would cost a Python call per heap comparison).
Timer = list[Any]

#: Cancelled entries are left in the heap (removing one from the middle is
#: O(n)) until there are at least this many and they are more than half of it.
COMPACT_MIN = 64


class TimerQueue:
    """Callbacks keyed by a monotonic deadline, for one loop thread only."""

    __slots__ = ("_heap", "_seq", "_cancelled", "now")

    def __init__(self) -> None:
        self._heap: list[Timer] = []
        self._seq = 0  # ties break in scheduling order; callables are never compared
        self._cancelled = 0  # entries in the heap whose fn is None
        self.now = time.monotonic()

    def __len__(self) -> int:
        """Entries in the heap, cancelled ones included: what it costs in memory."""
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def live(self) -> int:
        """Entries that will still run (not cancelled)."""
        return len(self._heap) - self._cancelled

    def schedule(self, deadline: float, fn: Callable[..., Any], *args: Any) -> Timer:
        """Run ``fn(*args)`` on the loop once ``now >= deadline`` (monotonic seconds); the entry is for ``cancel``."""
        self._seq += 1
        entry = [deadline, self._seq, fn, args]
        heapq.heappush(self._heap, entry)
        return entry

    @staticmethod
    def when(entry: Timer) -> float:
        """The deadline ``entry`` was scheduled for."""
        return float(entry[0])

    def cancel(self, entry: Timer) -> None:
        """Make ``entry`` a no-op and drop its references now (nothing to do if it already ran or was cancelled)."""
        if entry[2] is None:
            return
        entry[2] = None
        entry[3] = ()
        self._cancelled += 1
        heap = self._heap
        if self._cancelled >= COMPACT_MIN and self._cancelled * 2 > len(heap):
            # O(n), paid at most once per n/2 cancellations: amortised O(1).
            # In place: run_due may be iterating over this very list.
            heap[:] = [e for e in heap if e[2] is not None]
            heapq.heapify(heap)
            self._cancelled = 0

    def _drop_cancelled_head(self) -> None:
        heap = self._heap
        while heap and heap[0][2] is None:
            heapq.heappop(heap)
            self._cancelled -= 1

    def timeout_ms(self) -> int:
        """How long the loop may block: until the earliest deadline (-1: no deadline)."""
        if self._cancelled:
            self._drop_cancelled_head()  # a cancelled head must not wake an idle loop
        if not self._heap:
            return -1
        # Round up: waking a hair early would only spin one more round.
        return max(0, math.ceil((float(self._heap[0][0]) - time.monotonic()) * 1000))

    def due(self) -> bool:
        """Whether an entry's deadline has passed at ``now``."""
        heap = self._heap
        return bool(heap) and heap[0][0] <= self.now

    def advance(self, now: float) -> bool:
        """Set the loop clock to ``now`` (once per poll round); True when an entry is due.

        One call per round instead of an attribute store plus ``due()``: the
        poller runs this after every ``epoll_wait``.
        """
        self.now = now
        heap = self._heap
        return bool(heap) and heap[0][0] <= now

    def run_due(self) -> None:
        """Pop and run every entry whose deadline has passed, earliest first.

        Only entries scheduled before this call run in it: a callback that
        schedules itself again at a time already past (a re-arm computed
        from a stale clock, a user bug) runs in the next round, after the
        loop has polled, instead of spinning here forever. An exception
        propagates to the caller (the poller logs it and goes on;
        EngineShutdown unwinds the loop); the entries after it stay queued
        for the next round.
        """
        heap = self._heap
        now = self.now
        last = self._seq
        while heap and heap[0][0] <= now:
            entry = heap[0]
            if entry[1] > last:
                return  # scheduled by a callback of this very pass
            heapq.heappop(heap)
            fn = entry[2]
            if fn is None:
                self._cancelled -= 1
                continue
            args = entry[3]
            entry[2] = None  # ran: a later cancel() is a no-op
            entry[3] = ()
            fn(*args)
