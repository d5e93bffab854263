"""Deadlines on the event loop: a min-heap checked once per poll round.

gnet has no counterpart: its users have asked for per-connection timeouts
since 2019 (panjf2000/gnet#43, #83, #206, #277) and v2's ``SetDeadline``
returns ``ErrUnsupportedOp``. The design is redis ``ae``'s and libuv's: the
loop keeps its timers in a heap, bounds each ``epoll_wait`` by the earliest
deadline, and runs what is due after each round. No thread per connection,
no timer fd.

Entries are never removed early. A connection whose deadline moved (activity
pushed its idle deadline on, or ``set_deadline`` replaced it) leaves a stale
entry behind; its callback notices, and either does nothing or re-arms at the
real deadline. That makes "reset the idle timer" a plain attribute store on
the hot path instead of a heap operation per frame.

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

__all__ = ["TimerQueue"]


class TimerQueue:
    """Callbacks keyed by a monotonic deadline, for one loop thread only."""

    __slots__ = ("_heap", "_seq", "now")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Callable[..., Any], tuple[Any, ...]]] = []
        self._seq = 0  # ties break in scheduling order; callables are never compared
        self.now = time.monotonic()

    def __len__(self) -> int:
        return len(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)

    def schedule(self, deadline: float, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop once ``now >= deadline`` (monotonic seconds)."""
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, fn, args))

    def timeout_ms(self) -> int:
        """How long the loop may block: until the earliest deadline (-1: no deadline)."""
        if not self._heap:
            return -1
        # Round up: waking a hair early would only spin one more round.
        return max(0, math.ceil((self._heap[0][0] - time.monotonic()) * 1000))

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

        An exception propagates to the caller (the poller logs it and goes
        on; EngineShutdown unwinds the loop); the entries after it stay
        queued for the next round.
        """
        heap = self._heap
        now = self.now
        while heap and heap[0][0] <= now:
            _, _, fn, args = heapq.heappop(heap)
            fn(*args)
