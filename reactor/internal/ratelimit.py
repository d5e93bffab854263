"""Rate-limited logging: every log line a peer can trigger goes through here.

No gnet counterpart (gnet logs every such error, once per occurrence). A
peer that can make the server log a line per packet, per connection or per
datagram can fill a disk and spend the server's CPU on formatting
tracebacks: 50,000 oversized datagrams were 8,189 WARNING lines before
issue 17. :class:`LogLimiter` lets through at most ``per_period`` records of
one *kind* (the key: "react raised", "oversized datagram", ...) per
``period`` seconds and counts the rest; the next record of that kind that
is let through ends with "(N similar messages suppressed)", so nothing is
hidden without a trace.

Keys must come from a fixed set of message kinds, never from peer data
(an address, a frame): the table of windows is per key. As a guard against
such a mistake it is cleared when it reaches ``MAX_KEYS``.

Cheap when not limiting: a level check, one uncontended lock and a few
integer operations per record, next to the formatting the record costs
anyway; a suppressed record is never formatted.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

__all__ = ["DEFAULT_PER_PERIOD", "LogLimiter", "MAX_KEYS"]

#: Records of one kind let through per window, by default.
DEFAULT_PER_PERIOD = 10
#: More distinct keys than this means keys are being built from data: start over.
MAX_KEYS = 256


class LogLimiter:
    """At most ``per_period`` records per key per ``period`` seconds on ``logger``; thread-safe."""

    __slots__ = ("logger", "per_period", "period", "_clock", "_lock", "_windows")

    def __init__(
        self,
        logger: logging.Logger,
        per_period: int = DEFAULT_PER_PERIOD,
        period: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_period < 1 or not period > 0:
            raise ValueError(f"LogLimiter needs per_period >= 1 and period > 0, got {per_period}, {period}")
        self.logger = logger
        self.per_period = per_period
        self.period = period
        self._clock = clock  # a parameter so that tests can step time by hand
        self._lock = threading.Lock()
        # key -> [window start, records let through in it, records suppressed since the last one let through]
        self._windows: dict[str, list[float]] = {}

    def log(
        self,
        key: str,
        level: int,
        msg: str,
        *args: object,
        exc_info: bool = False,
        per_period: int | None = None,
        stacklevel: int = 1,
    ) -> bool:
        """Log ``msg % args`` at ``level`` unless ``key`` has used up its window; True when logged.

        ``per_period`` overrides the limit for this key (EMFILE: 1 per
        second). ``exc_info=True`` attaches the exception being handled, as
        ``Logger.exception`` does. ``stacklevel`` counts from the caller of
        this method, so the record names the caller's line.
        """
        logger = self.logger
        if not logger.isEnabledFor(level):
            return False
        limit = self.per_period if per_period is None else per_period
        now = self._clock()
        with self._lock:
            window = self._windows.get(key)
            if window is None:
                if len(self._windows) >= MAX_KEYS:
                    self._windows.clear()
                window = self._windows[key] = [now, 0, 0]
            elif now - window[0] >= self.period:
                window[0] = now
                window[1] = 0
            if window[1] >= limit:
                window[2] += 1
                return False
            window[1] += 1
            suppressed = int(window[2])
            window[2] = 0
        if suppressed:
            msg += " (%d similar messages suppressed)"
            args += (suppressed,)
        logger.log(level, msg, *args, exc_info=exc_info, stacklevel=stacklevel + 1)
        return True

    def suppressed(self, key: str) -> int:
        """Records of ``key`` suppressed since its last record was let through (for tests and metrics)."""
        with self._lock:
            window = self._windows.get(key)
            return 0 if window is None else int(window[2])
