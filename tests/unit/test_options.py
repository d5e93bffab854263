"""reactor.options: defaults, validation, the read-buffer rule, num_loops and the logger set-up."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import pathlib
from collections.abc import Iterator

import pytest

from reactor.errors import TooManyEventLoopThreadsError
from reactor.load_balancer import LoadBalancing
from reactor.options import (
    DEFAULT_READ_BUFFER_CAP,
    DEFAULT_WRITE_BUFFER_CAP,
    MAX_EVENT_LOOPS,
    Options,
    make_logger,
    normalize_read_buffer_cap,
)


class Codec:
    def encode(self, c: object, data: bytes) -> bytes:
        return data

    def decode(self, c: object) -> bytes:
        return b""


@pytest.fixture
def reactor_logger() -> Iterator[logging.Logger]:
    """The "reactor" logger, with its level and handlers restored after the test."""
    logger = logging.getLogger("reactor")
    level, handlers = logger.level, list(logger.handlers)
    try:
        yield logger
    finally:
        for h in list(logger.handlers):
            if h not in handlers:
                logger.removeHandler(h)
                h.close()
        logger.setLevel(level)


# --- defaults --------------------------------------------------------------------------
def test_defaults() -> None:
    """Options() has the documented defaults (gnet's, plus reactor's write_buffer_cap)."""
    o = Options()
    assert o.multicore is False
    assert o.num_event_loop == 0
    assert o.lb is LoadBalancing.ROUND_ROBIN
    assert o.reuse_port is False
    assert o.reuse_addr is False
    assert o.tcp_keepalive == 0
    assert o.tcp_no_delay is True
    assert o.socket_recv_buffer == 0
    assert o.socket_send_buffer == 0
    assert o.read_buffer_cap == 64 * 1024 == DEFAULT_READ_BUFFER_CAP
    assert o.write_buffer_cap == 4 * 1024 * 1024 == DEFAULT_WRITE_BUFFER_CAP
    assert o.lock_os_thread is False
    assert o.ticker is False
    assert o.codec is None
    assert o.log_path == ""
    assert o.log_level == logging.INFO
    assert o.logger is None
    assert o.edge_triggered is False
    assert o.edge_triggered_io_chunk == 1024 * 1024
    o.validate()


# --- validate ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("multicore", 1),
        ("multicore", "yes"),
        ("reuse_port", None),
        ("reuse_addr", 0),
        ("tcp_no_delay", "false"),
        ("lock_os_thread", 1),
        ("ticker", None),
        ("edge_triggered", 1),
        ("num_event_loop", 1.5),
        ("num_event_loop", "4"),
        ("num_event_loop", True),
        ("num_event_loop", -1),
        ("socket_recv_buffer", -1),
        ("socket_recv_buffer", 1024.0),
        ("socket_send_buffer", -1),
        ("socket_send_buffer", None),
        ("read_buffer_cap", "64k"),
        ("read_buffer_cap", 4096.0),
        ("read_buffer_cap", False),
        ("write_buffer_cap", -1),
        ("write_buffer_cap", 1.5),
        ("edge_triggered_io_chunk", 0),
        ("edge_triggered_io_chunk", -4096),
        ("edge_triggered_io_chunk", 4096.0),
        ("lb", 3),
        ("lb", -1),
        ("lb", "round_robin"),
        ("tcp_keepalive", -1),
        ("tcp_keepalive", 0.5),
        ("tcp_keepalive", "60"),
        ("tcp_keepalive", True),
        ("tcp_keepalive", None),
        ("codec", object()),
        ("codec", b"line"),
        ("logger", "reactor"),
        ("logger", logging.getLogger("reactor").handlers),
        ("log_level", "LOUD"),
        ("log_level", True),
        ("log_level", 1.5),
        ("log_level", None),
        ("log_path", 123),
        ("log_path", None),
    ],
)
def test_validate_rejects_bad_value(name: str, value: object) -> None:
    """validate() raises ValueError naming the option for a bad type or range."""
    o = dataclasses.replace(Options(), **{name: value})
    with pytest.raises(ValueError, match=rf"\b{name}\b"):
        o.validate()


def test_validate_too_many_event_loops() -> None:
    """More than MAX_EVENT_LOOPS loops raises TooManyEventLoopThreadsError (a ValueError) naming it."""
    Options(num_event_loop=MAX_EVENT_LOOPS).validate()
    with pytest.raises(TooManyEventLoopThreadsError, match="num_event_loop"):
        Options(num_event_loop=MAX_EVENT_LOOPS + 1).validate()
    assert issubclass(TooManyEventLoopThreadsError, ValueError)


@pytest.mark.parametrize(
    "changes",
    [
        {"read_buffer_cap": -5},  # normalised later, not an error
        {"read_buffer_cap": 0},
        {"write_buffer_cap": 0},  # 0: no limit
        {"tcp_keepalive": 0},
        {"tcp_keepalive": 1},
        {"tcp_keepalive": 1.5},
        {"tcp_keepalive": 3600},
        {"lb": 2},
        {"lb": LoadBalancing.LEAST_CONNECTIONS},
        {"codec": Codec()},
        {"logger": logging.getLogger("x")},
        {"log_level": "debug"},
        {"log_level": "WARNING"},
        {"log_level": logging.ERROR},
        {"log_path": pathlib.Path("/tmp/x.log")},
        {"num_event_loop": 8, "multicore": True, "edge_triggered": True, "edge_triggered_io_chunk": 1},
    ],
)
def test_validate_accepts_good_values(changes: dict[str, object]) -> None:
    """validate() accepts every documented form of a valid value."""
    Options(**changes).validate()  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [math.inf, math.nan, float(2**31)])
def test_validate_rejects_non_finite_or_huge_keepalive(value: float) -> None:
    """validate() refuses tcp_keepalive values no socket option can take."""
    with pytest.raises(ValueError, match="tcp_keepalive"):
        Options(tcp_keepalive=value).validate()


def test_validate_rejects_bool_lb() -> None:
    """validate() refuses a bool as a load-balancing strategy."""
    with pytest.raises(ValueError, match="lb"):
        Options(lb=True).validate()  # type: ignore[arg-type]


# --- replace ------------------------------------------------------------------------------
def test_replace_applies_changes_to_a_copy() -> None:
    """replace() returns a changed copy and leaves the original alone."""
    o = Options()
    o2 = o.replace(multicore=True, num_event_loop=3)
    assert (o2.multicore, o2.num_event_loop) == (True, 3)
    assert (o.multicore, o.num_event_loop) == (False, 0)
    assert o2 is not o


def test_replace_unknown_option_lists_valid_ones() -> None:
    """replace() with an unknown name raises TypeError naming it and listing the valid options."""
    with pytest.raises(TypeError) as info:
        Options().replace(multicores=True, read_buffer_cap=1)
    msg = str(info.value)
    assert "'multicores'" in msg
    for f in dataclasses.fields(Options):
        assert f.name in msg


# --- normalize_read_buffer_cap -------------------------------------------------------------
@pytest.mark.parametrize(
    ("cap", "expected"),
    [
        (0, 65536),
        (-5, 65536),
        (1, 1024),
        (1023, 1024),
        (1024, 1024),
        (1025, 2048),
        (3000, 4096),
        (4096, 4096),
        (65536, 65536),
        (65537, 131072),
    ],
)
def test_normalize_read_buffer_cap(cap: int, expected: int) -> None:
    """gnet's rule: <= 0 → 64 KiB, <= 1 KiB → 1 KiB, else the next power of two."""
    assert normalize_read_buffer_cap(cap) == expected


# --- num_loops ---------------------------------------------------------------------------------
def test_num_loops() -> None:
    """One loop by default, one per usable CPU with multicore, exactly num_event_loop when > 0."""
    assert Options().num_loops() == 1
    assert Options(multicore=True).num_loops() == len(os.sched_getaffinity(0))
    assert Options(num_event_loop=5).num_loops() == 5
    assert Options(num_event_loop=3, multicore=True).num_loops() == 3


# --- make_logger -------------------------------------------------------------------------
def test_make_logger_explicit_logger_wins(reactor_logger: logging.Logger, tmp_path: pathlib.Path) -> None:
    """An explicit logger is returned as is; no file is opened even with log_path set."""
    mine = logging.getLogger("test.reactor.mine")
    handlers_before = list(reactor_logger.handlers)
    log = tmp_path / "unused.log"
    logger, cleanup = make_logger(Options(logger=mine, log_path=str(log)))
    assert logger is mine
    assert mine.handlers == []
    assert reactor_logger.handlers == handlers_before
    cleanup()
    assert not log.exists()


def test_make_logger_default(reactor_logger: logging.Logger) -> None:
    """Without logger or log_path it is the "reactor" logger, left untouched."""
    handlers_before = list(reactor_logger.handlers)
    level_before = reactor_logger.level
    logger, cleanup = make_logger(Options())
    assert logger is reactor_logger
    assert reactor_logger.handlers == handlers_before
    assert reactor_logger.level == level_before
    cleanup()
    assert reactor_logger.handlers == handlers_before


def test_make_logger_log_path_writes_file_and_cleans_up(
    reactor_logger: logging.Logger, tmp_path: pathlib.Path
) -> None:
    """log_path adds a file handler at log_level; cleanup removes it, closes the file, restores the level."""
    reactor_logger.setLevel(logging.NOTSET)
    handlers_before = list(reactor_logger.handlers)
    log = tmp_path / "reactor.log"
    logger, cleanup = make_logger(Options(log_path=log, log_level="debug"))  # type: ignore[arg-type]
    assert logger is reactor_logger
    added = [h for h in reactor_logger.handlers if h not in handlers_before]
    assert len(added) == 1
    handler = added[0]
    assert isinstance(handler, logging.FileHandler)
    assert handler.level == logging.DEBUG
    assert reactor_logger.level == logging.DEBUG

    logger.debug("hello %s", "file")
    logger.log(5, "below the level")
    handler.flush()
    text = log.read_text()
    assert "DEBUG" in text and "hello file" in text
    assert "below the level" not in text

    cleanup()
    assert reactor_logger.handlers == handlers_before
    assert handler.stream is None  # closed: the autouse fixture also checks the fd is gone
    assert reactor_logger.level == logging.NOTSET
    logger.error("after cleanup")
    assert "after cleanup" not in log.read_text()


def test_make_logger_does_not_raise_a_lower_logger_level(
    reactor_logger: logging.Logger, tmp_path: pathlib.Path
) -> None:
    """If the logger already lets more through than log_level, its level is kept."""
    reactor_logger.setLevel(logging.DEBUG)
    logger, cleanup = make_logger(Options(log_path=str(tmp_path / "x.log"), log_level=logging.WARNING))
    try:
        assert logger.level == logging.DEBUG
        handler = logger.handlers[-1]
        assert handler.level == logging.WARNING
    finally:
        cleanup()
    assert reactor_logger.level == logging.DEBUG


def test_make_logger_repeated_cycles_leak_nothing(
    reactor_logger: logging.Logger, tmp_path: pathlib.Path
) -> None:
    """Repeated make_logger/cleanup cycles leave no handler behind (and, per the leak fixture, no fd)."""
    handlers_before = list(reactor_logger.handlers)
    for i in range(5):
        _, cleanup = make_logger(Options(log_path=str(tmp_path / f"{i}.log")))
        assert len(reactor_logger.handlers) == len(handlers_before) + 1
        cleanup()
    assert reactor_logger.handlers == handlers_before


# --- async_write_limit (issue 17) -------------------------------------------------------------------
def test_async_write_limit_defaults_to_four_caps_but_at_least_16_mib() -> None:
    from reactor.options import DEFAULT_ASYNC_WRITE_LIMIT

    assert DEFAULT_ASYNC_WRITE_LIMIT == 16 * 1024 * 1024
    assert Options().async_write_limit is None
    assert Options().async_write_limit_bytes() == 4 * DEFAULT_WRITE_BUFFER_CAP
    assert Options(write_buffer_cap=64 * 1024).async_write_limit_bytes() == DEFAULT_ASYNC_WRITE_LIMIT
    assert Options(write_buffer_cap=32 << 20).async_write_limit_bytes() == 128 << 20
    assert Options(write_buffer_cap=0).async_write_limit_bytes() == DEFAULT_ASYNC_WRITE_LIMIT
    assert Options(async_write_limit=5000).async_write_limit_bytes() == 5000
    assert Options(async_write_limit=0).async_write_limit_bytes() == 0  # explicitly unbounded


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True])
def test_async_write_limit_is_validated(bad: object) -> None:
    with pytest.raises(ValueError, match="async_write_limit"):
        Options(async_write_limit=bad).validate()  # type: ignore[arg-type]
