"""reactor.internal.timers: order, cancellation, compaction, and a pass that cannot spin."""

from __future__ import annotations

import gc
import weakref
from typing import Any

from reactor.internal.timers import COMPACT_MIN, TimerQueue


class Token:
    """Something a timer's arguments can hold, to see whether the heap keeps it alive."""


def test_due_entries_run_earliest_first_and_ties_in_scheduling_order() -> None:
    q = TimerQueue()
    ran: list[str] = []
    q.schedule(2.0, ran.append, "b")
    q.schedule(1.0, ran.append, "a")
    q.schedule(2.0, ran.append, "c")
    q.schedule(9.0, ran.append, "later")
    assert q.advance(2.0)
    q.run_due()
    assert ran == ["a", "b", "c"]
    assert len(q) == q.live() == 1


def test_a_cancelled_entry_does_not_run_and_keeps_nothing_alive() -> None:
    q = TimerQueue()
    ran: list[Any] = []
    token = Token()
    ref = weakref.ref(token)
    entry = q.schedule(1.0, ran.append, token)
    q.cancel(entry)
    q.cancel(entry)  # twice: a no-op
    del token
    gc.collect()
    assert ref() is None, "a cancelled entry still holds its arguments"
    assert q.live() == 0
    q.advance(5.0)
    q.run_due()
    assert ran == [] and len(q) == 0


def test_cancel_after_the_entry_ran_is_a_no_op() -> None:
    q = TimerQueue()
    ran: list[int] = []
    entry = q.schedule(1.0, ran.append, 1)
    q.advance(1.0)
    q.run_due()
    q.cancel(entry)
    assert ran == [1] and q.live() == 0 and len(q) == 0


def test_compaction_bounds_the_heap_by_the_live_entries() -> None:
    q = TimerQueue()
    entries = [q.schedule(100.0 + i, print) for i in range(10_000)]
    for e in entries[:9_900]:
        q.cancel(e)
    assert q.live() == 100
    assert len(q) <= 2 * q.live() + COMPACT_MIN, len(q)


def test_moving_one_deadline_earlier_again_and_again_keeps_the_heap_small() -> None:
    """The connection pattern: cancel the armed entry, push the earlier one (set_deadline moved earlier)."""
    q = TimerQueue()
    armed = q.schedule(1e6, print)
    for i in range(100_000):
        q.cancel(armed)
        armed = q.schedule(1e6 - i - 1, print)
    assert q.live() == 1
    assert len(q) <= 2 + COMPACT_MIN, len(q)


def test_timeout_skips_cancelled_entries_at_the_head() -> None:
    q = TimerQueue()
    entry = q.schedule(q.now + 0.001, print)
    q.cancel(entry)
    assert q.timeout_ms() == -1, "a cancelled entry must not wake an idle loop"
    q.schedule(q.now + 60, print)
    assert 59_000 <= q.timeout_ms() <= 60_000


def test_an_entry_scheduled_by_a_callback_runs_in_the_next_pass_even_if_due() -> None:
    q = TimerQueue()
    runs = 0

    def again() -> None:
        nonlocal runs
        runs += 1
        q.schedule(q.now - 1, again)  # already due: a loop that ran it now would never end

    q.schedule(0.0, again)
    q.advance(1.0)
    q.run_due()
    assert runs == 1
    q.run_due()
    assert runs == 2
    assert q.live() == 1


def test_a_callback_cancelling_entries_during_the_pass_is_safe() -> None:
    q = TimerQueue()
    ran: list[int] = []
    victims = [q.schedule(1.0, ran.append, i) for i in range(200)]

    def cancel_all() -> None:
        for v in victims:
            q.cancel(v)  # compacts the heap in place while run_due walks it

    q.schedule(0.5, cancel_all)
    q.advance(2.0)
    q.run_due()
    assert ran == [] and q.live() == 0
