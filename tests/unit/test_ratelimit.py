"""reactor.internal.ratelimit: at most N records per kind per window, and a count of the rest."""

from __future__ import annotations

import logging
import threading

import pytest

from reactor.internal.ratelimit import MAX_KEYS, LogLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def logger(caplog: pytest.LogCaptureFixture) -> logging.Logger:
    caplog.set_level(logging.DEBUG, logger="reactor.test-ratelimit")
    return logging.getLogger("reactor.test-ratelimit")


def messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "reactor.test-ratelimit"]


def test_at_most_n_per_window_then_the_count_of_the_suppressed(logger: logging.Logger,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    lim = LogLimiter(logger, per_period=3, period=1.0, clock=clock)
    logged = [lim.log("kind", logging.WARNING, "bad datagram %d", i) for i in range(10)]
    assert logged == [True] * 3 + [False] * 7
    assert lim.suppressed("kind") == 7
    clock.t += 1.0
    assert lim.log("kind", logging.WARNING, "bad datagram %d", 10)
    assert messages(caplog) == [
        "bad datagram 0", "bad datagram 1", "bad datagram 2", "bad datagram 10 (7 similar messages suppressed)",
    ]
    assert lim.suppressed("kind") == 0


def test_kinds_are_limited_separately_and_per_period_overrides(logger: logging.Logger,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    lim = LogLimiter(logger, per_period=2, clock=Clock())
    for _ in range(5):
        lim.log("a", logging.ERROR, "a")
        lim.log("b", logging.ERROR, "b")
        lim.log("emfile", logging.ERROR, "emfile", per_period=1)
    assert messages(caplog).count("a") == 2
    assert messages(caplog).count("b") == 2
    assert messages(caplog).count("emfile") == 1


def test_a_disabled_level_costs_nothing_and_counts_nothing(logger: logging.Logger) -> None:
    logger.setLevel(logging.ERROR)
    lim = LogLimiter(logger, per_period=1, clock=Clock())
    for _ in range(5):
        assert not lim.log("quiet", logging.INFO, "not shown")
    assert lim.suppressed("quiet") == 0


def test_exc_info_and_the_callers_line(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    lim = LogLimiter(logger, clock=Clock())
    try:
        raise ValueError("boom")
    except ValueError:
        lim.log("raised", logging.ERROR, "it raised", exc_info=True)
    (record,) = [r for r in caplog.records if r.name == "reactor.test-ratelimit"]
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert record.pathname == __file__, "the record must name the caller, not ratelimit.py"


def test_thread_safe_exact_counts(logger: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    lim = LogLimiter(logger, per_period=5, clock=Clock())  # the clock stands still: one window
    barrier = threading.Barrier(8)

    def hammer() -> None:
        barrier.wait()
        for _ in range(1000):
            lim.log("shared", logging.WARNING, "x")

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(messages(caplog)) == 5
    assert lim.suppressed("shared") == 8000 - 5


def test_keys_built_from_data_cannot_grow_the_table_without_bound(logger: logging.Logger) -> None:
    lim = LogLimiter(logger, clock=Clock())
    for i in range(10 * MAX_KEYS):
        lim.log(f"peer {i}", logging.DEBUG, "a key made from data: a mistake, but bounded")
    assert len(lim._windows) <= MAX_KEYS


def test_bad_limits_are_refused(logger: logging.Logger) -> None:
    with pytest.raises(ValueError):
        LogLimiter(logger, per_period=0)
    with pytest.raises(ValueError):
        LogLimiter(logger, period=0)
