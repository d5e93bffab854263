"""Bounded waits shared by the whole of reactor.testing.

* :data:`DEFAULT_TIMEOUT`: the default bound of every wait (start, stop, ``wait_for``...).
* :class:`WaitTimeout`: what a wait that ran out of time raises.
* :class:`Waiting`: the mixin giving a handler a condition and ``wait_for``
  (used by the recording, scripted and HTTP handlers).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_TIMEOUT", "WaitTimeout", "Waiting"]

#: Default bound, in seconds, of every wait in reactor.testing (start, stop, ``wait_for``...).
DEFAULT_TIMEOUT = 5.0


class WaitTimeout(AssertionError, TimeoutError):
    """A ``wait_for``-style condition did not become true in time.

    Both an ``AssertionError`` (pytest reports it as a plain test failure)
    and a ``TimeoutError`` (``except TimeoutError`` catches it).
    """


class Waiting:
    """A Condition and ``wait_for``; subclasses call ``self._changed()`` after each update."""

    def __init__(self) -> None:
        self._cond = threading.Condition()

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _describe(self) -> str:
        return ""

    def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = DEFAULT_TIMEOUT,
        message: str | None = None,
    ) -> Any:
        """Wait until ``predicate()`` is true, re-checking after every event; return its value.

        ``predicate`` runs with the handler's lock held (its own methods
        may be called: the lock is re-entrant).

        :raises WaitTimeout: (an ``AssertionError`` and a ``TimeoutError``)
            not true within ``timeout`` seconds; the message shows what
            the handler has seen so far.
        """
        with self._cond:
            result = self._cond.wait_for(predicate, timeout)
            if result:
                return result
            what = message or getattr(predicate, "__name__", repr(predicate))
            state = self._describe()
            raise WaitTimeout(f"{what}: not true within {timeout} s" + (f"; {state}" if state else ""))

