"""reactor.internal.netpoll.Poller against a real epoll instance and eventfd (no mocks).

``polling`` runs on a background thread, as an event loop would; every test
stops it the way the server does, with an urgent task that raises
EngineShutdown, joins the thread and closes the poller and every fd.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import reactor
from reactor.errors import EngineShutdown
from reactor.internal import unix
from reactor.internal.netpoll import (
    INIT_POLL_EVENTS_CAP,
    MAX_ASYNC_TASKS_AT_ONE_TIME,
    Poller,
    open_poller,
)

WAIT_S = 1.0


def raise_shutdown() -> None:
    raise EngineShutdown


class PollThread:
    """``poller.polling(callback)`` on a thread; remembers what it raised."""

    def __init__(self, poller: Poller, callback: Callable[[int, int], None]) -> None:
        self.poller = poller
        self.callback = callback
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-polling", daemon=True)

    def _run(self) -> None:
        try:
            self.poller.polling(self.callback)
        except BaseException as e:
            self.error = e

    def start(self) -> PollThread:
        self.thread.start()
        return self

    def join(self) -> BaseException | None:
        """Wait (bounded) for polling to return; give back what it raised."""
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "polling did not return"
        return self.error

    def stop(self) -> BaseException | None:
        """Stop polling with an urgent EngineShutdown task (if it still runs) and join."""
        if self.thread.is_alive():
            self.poller.urgent_trigger(raise_shutdown)
        return self.join()


@pytest.fixture
def poller() -> Iterator[Poller]:
    p = Poller()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def run_polling(poller: Poller) -> Iterator[Callable[..., PollThread]]:
    """Factory: start ``poller.polling(callback)`` on a thread; stopped and joined at teardown."""
    started: list[PollThread] = []

    def start(callback: Callable[[int, int], None] = lambda fd, ev: None) -> PollThread:
        pt = PollThread(poller, callback).start()
        started.append(pt)
        return pt

    yield start
    for pt in started:
        pt.stop()


@pytest.fixture
def stack() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as es:
        yield es


def socketpair(stack: contextlib.ExitStack) -> tuple[socket.socket, socket.socket]:
    a, b = socket.socketpair()
    stack.enter_context(a)
    stack.enter_context(b)
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def sync(poller: Poller) -> None:
    """Wait until the loop has run a task queued now (so it went through another epoll round)."""
    done = threading.Event()
    poller.trigger(done.set)
    assert done.wait(WAIT_S), "the loop did not run a task"


def wait_until(predicate: Callable[[], bool]) -> None:
    """Poll ``predicate`` (bounded by WAIT_S)."""
    deadline = time.monotonic() + WAIT_S
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.002)


def ready_now(poller: Poller) -> dict[int, int]:
    """What the poller's epoll instance reports right now: {fd: mask} (timeout 0)."""
    return dict(unix.epoll_wait(poller.fd, unix.EpollEvents(64), 0))


# --- opening, closing -----------------------------------------------------------------------------
def test_open_poller_fds() -> None:
    """open_poller creates a close-on-exec epoll fd and a non-blocking close-on-exec eventfd."""
    p = open_poller()
    try:
        assert isinstance(p, Poller)
        assert p.fd != p.efd
        assert os.get_inheritable(p.fd) is False
        assert os.get_inheritable(p.efd) is False
        assert os.get_blocking(p.efd) is False
        assert os.readlink(f"/proc/self/fd/{p.fd}") == "anon_inode:[eventpoll]"
        assert os.readlink(f"/proc/self/fd/{p.efd}") == "anon_inode:[eventfd]"
        assert p.logger is logging.getLogger("reactor")
    finally:
        p.close()


def test_close_is_idempotent_and_does_not_close_reused_fds(stack: contextlib.ExitStack) -> None:
    """close() closes both fds once; a second close() leaves fds that reuse those numbers alone."""
    p = Poller()
    fds = {p.fd, p.efd}
    p.close()
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)
    reused = []
    for _ in range(2):
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        stack.callback(os.close, fd)
        reused.append(fd)
    assert set(reused) == fds  # lowest free numbers come back
    p.close()
    for fd in reused:
        os.fstat(fd)  # still open


@pytest.mark.parametrize("queued_before_close", [False, True])
def test_trigger_after_close_raises_and_does_not_write_reused_fd(
    stack: contextlib.ExitStack, queued_before_close: bool
) -> None:
    """After close(), trigger/urgent_trigger raise ServerInShutdownError and never write the old eventfd number."""
    p = Poller()
    if queued_before_close:
        p.trigger(lambda: None)  # leaves the wake-up flag set, as a busy loop would
    old_efd = p.efd
    p.close()
    reused = []
    for _ in range(2):  # the epoll fd's and the eventfd's numbers come back
        fd = unix.eventfd(0)
        stack.callback(os.close, fd)
        reused.append(fd)
    assert old_efd in reused
    with pytest.raises(reactor.ServerInShutdownError):
        p.trigger(lambda: None)
    with pytest.raises(reactor.ServerInShutdownError):
        p.urgent_trigger(lambda: None)
    for fd in reused:
        with pytest.raises(BlockingIOError):
            unix.eventfd_read(fd)  # counter still 0: nothing was written there


# --- the wake-up protocol ------------------------------------------------------------------------
def test_triggers_write_the_eventfd_once_until_the_loop_drains(poller: Poller) -> None:
    """Several triggers before the loop runs cause a single eventfd write (counter == 1)."""
    for _ in range(3):
        poller.trigger(lambda: None)
    poller.urgent_trigger(lambda: None)
    assert unix.eventfd_read(poller.efd) == 1
    assert poller.has_tasks()


def test_drain_tasks(poller: Poller) -> None:
    """drain_tasks returns every queued task, urgent first, and empties the queues."""

    def f(x: int) -> None: ...

    def g(x: int, y: int) -> None: ...

    poller.trigger(f, 1)
    poller.urgent_trigger(g, 2, 3)
    poller.trigger(f, 4)
    assert poller.has_tasks()
    assert poller.drain_tasks() == [(g, (2, 3)), (f, (1,)), (f, (4,))]
    assert not poller.has_tasks()
    assert poller.drain_tasks() == []


def test_trigger_from_another_thread_wakes_polling(poller: Poller, run_polling: Callable[..., PollThread]) -> None:
    """A loop blocked in epoll_wait runs a task triggered from another thread, with its arguments."""
    pt = run_polling()
    time.sleep(0.05)  # let it block in epoll_wait(-1)
    got: list[tuple[str, int]] = []
    done = threading.Event()

    def task(name: str, n: int) -> None:
        got.append((name, n))
        done.set()

    for submit, name, n in ((poller.trigger, "normal", 1), (poller.urgent_trigger, "urgent", 2)):
        done.clear()
        producer = threading.Thread(target=submit, args=(task, name, n))
        producer.start()
        producer.join(WAIT_S)
        assert done.wait(WAIT_S)
    assert got == [("normal", 1), ("urgent", 2)]
    assert isinstance(pt.stop(), EngineShutdown)


def test_urgent_tasks_run_before_normal_ones(poller: Poller, run_polling: Callable[..., PollThread]) -> None:
    """In one wake-up every urgent task runs before any normal one, each queue in FIFO order."""
    order: list[str] = []
    poller.trigger(order.append, "n1")
    poller.urgent_trigger(order.append, "u1")
    poller.trigger(order.append, "n2")
    poller.urgent_trigger(order.append, "u2")
    poller.trigger(order.append, "n3")
    poller.urgent_trigger(order.append, "u3")
    run_polling()
    sync(poller)
    assert order == ["u1", "u2", "u3", "n1", "n2", "n3"]


def test_at_most_256_normal_tasks_per_wakeup(
    poller: Poller, run_polling: Callable[..., PollThread], stack: contextlib.ExitStack
) -> None:
    """600 normal tasks take 3 wake-ups (256 + 256 + 88), all run, in FIFO order."""
    a, b = socketpair(stack)
    b.send(b"x")  # never read: level-triggered, so every epoll round reports it
    poller.add_read(a.fileno())
    rounds = [0]

    def on_event(fd: int, ev: int) -> None:
        rounds[0] += 1  # callbacks run before the tasks of the same round

    ran: list[tuple[int, int]] = []
    done = threading.Event()

    def task(i: int) -> None:
        ran.append((i, rounds[0]))
        if i == 599:
            done.set()

    for i in range(600):
        poller.trigger(task, i)
    run_polling(on_event)
    assert done.wait(WAIT_S)
    assert [i for i, _ in ran] == list(range(600))
    per_round = collections.Counter(r for _, r in ran)
    assert len(per_round) >= 3
    assert max(per_round.values()) <= MAX_ASYNC_TASKS_AT_ONE_TIME == 256
    assert [per_round[r] for r in sorted(per_round)] == [256, 256, 88]
    poller.delete(a.fileno())


def test_urgent_tasks_are_not_limited(
    poller: Poller, run_polling: Callable[..., PollThread], stack: contextlib.ExitStack
) -> None:
    """All 600 queued urgent tasks run in the same wake-up."""
    a, b = socketpair(stack)
    b.send(b"x")  # never read: every epoll round reports it
    poller.add_read(a.fileno())
    rounds = [0]

    def on_event(fd: int, ev: int) -> None:
        rounds[0] += 1

    ran: list[tuple[int, int]] = []
    for i in range(600):
        poller.urgent_trigger(lambda i: ran.append((i, rounds[0])), i)
    run_polling(on_event)
    wait_until(lambda: len(ran) == 600)
    assert [i for i, _ in ran] == list(range(600))
    assert len({r for _, r in ran}) == 1
    poller.delete(a.fileno())


def test_an_urgent_task_requeuing_itself_does_not_stop_polling(
    poller: Poller, run_polling: Callable[..., PollThread], stack: contextlib.ExitStack
) -> None:
    """Urgent tasks queued during the drain still run before normal ones, but a self-requeuing one yields to events."""
    a, b = socketpair(stack)
    poller.add_read(a.fileno())
    seen = threading.Event()
    spins = [0]
    give_up = time.monotonic() + 3 * WAIT_S  # bounded even if the poller never yields

    def spin() -> None:
        spins[0] += 1
        if not seen.is_set() and time.monotonic() < give_up:
            poller.urgent_trigger(spin)

    def on_event(fd: int, ev: int) -> None:
        a.recv(16)
        seen.set()

    run_polling(on_event)
    poller.urgent_trigger(spin)
    wait_until(lambda: spins[0] > 1000)
    b.send(b"x")  # an event must get through while spin keeps re-queuing itself
    assert seen.wait(WAIT_S), f"the readable fd was never polled ({spins[0]} spins)"
    poller.delete(a.fileno())


def test_task_queued_by_a_task_runs(poller: Poller, run_polling: Callable[..., PollThread]) -> None:
    """A task queued while the loop drains (wake-up flag still set) still gets a wake-up."""
    done = threading.Event()

    def first() -> None:
        poller.trigger(second)

    def second() -> None:
        poller.urgent_trigger(done.set)

    run_polling()
    poller.trigger(first)
    assert done.wait(WAIT_S)


def test_concurrent_producers(poller: Poller, run_polling: Callable[..., PollThread]) -> None:
    """Tasks from several threads at once all run, each thread's in the order it queued them."""
    ran: list[tuple[int, int]] = []
    run_polling()

    def produce(t: int) -> None:
        for i in range(300):
            (poller.urgent_trigger if i % 7 == 0 else poller.trigger)(ran.append, (t, i))

    producers = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for th in producers:
        th.start()
    for th in producers:
        th.join(WAIT_S)
    sync(poller)
    assert len(ran) == 1200
    for t in range(4):
        normal = [i for tt, i in ran if tt == t and i % 7]
        urgent = [i for tt, i in ran if tt == t and i % 7 == 0]
        assert normal == sorted(normal) and len(normal) == 300 - 43
        assert urgent == sorted(urgent) and len(urgent) == 43


# --- errors inside the loop ----------------------------------------------------------------------
def test_task_raising_engine_shutdown_stops_polling(poller: Poller, run_polling: Callable[..., PollThread]) -> None:
    """A normal task raising EngineShutdown makes polling raise it; later tasks stay queued."""
    ran: list[str] = []
    poller.trigger(ran.append, "before")
    poller.trigger(raise_shutdown)
    poller.trigger(ran.append, "after")
    pt = run_polling()
    assert isinstance(pt.join(), EngineShutdown)
    assert ran == ["before"]
    assert [args for _, args in poller.drain_tasks()] == [("after",)]


def test_callback_raising_engine_shutdown_stops_polling(
    poller: Poller, run_polling: Callable[..., PollThread], stack: contextlib.ExitStack
) -> None:
    """A readiness callback raising EngineShutdown makes polling raise it."""
    a, b = socketpair(stack)
    poller.add_read(a.fileno())
    calls: list[int] = []

    def on_event(fd: int, ev: int) -> None:
        calls.append(fd)
        raise EngineShutdown

    pt = run_polling(on_event)
    b.send(b"x")
    assert isinstance(pt.join(), EngineShutdown)
    assert calls == [a.fileno()]
    poller.delete(a.fileno())


def test_task_error_is_logged_and_polling_continues(
    poller: Poller, run_polling: Callable[..., PollThread], caplog: pytest.LogCaptureFixture
) -> None:
    """A task raising ValueError is logged on the "reactor" logger and the loop keeps running."""

    def bad() -> None:
        raise ValueError("task boom")

    caplog.set_level(logging.ERROR, logger="reactor")
    run_polling()
    poller.trigger(bad)
    poller.urgent_trigger(bad)
    sync(poller)
    records = [r for r in caplog.records if r.name == "reactor" and r.exc_info]
    assert len(records) == 2
    for r in records:
        assert r.levelno == logging.ERROR
        assert r.exc_info[0] is ValueError
        assert "task boom" in str(r.exc_info[1])


def test_callback_error_is_logged_and_polling_continues(
    poller: Poller,
    run_polling: Callable[..., PollThread],
    caplog: pytest.LogCaptureFixture,
    stack: contextlib.ExitStack,
) -> None:
    """A readiness callback raising ValueError is logged with the fd and the loop keeps running."""
    a, b = socketpair(stack)
    poller.add_read(a.fileno())
    received: list[bytes] = []

    def on_event(fd: int, ev: int) -> None:
        received.append(a.recv(16))  # drained: reported once per send
        raise ValueError("callback boom")

    caplog.set_level(logging.ERROR, logger="reactor")
    run_polling(on_event)
    b.send(b"x")
    wait_until(lambda: len(received) == 1)
    b.send(b"y")  # the loop survived the first error: it handles this too
    wait_until(lambda: len(received) == 2)
    sync(poller)
    assert received == [b"x", b"y"]
    records = [r for r in caplog.records if r.name == "reactor" and r.exc_info]
    assert len(records) == 2
    assert all(r.exc_info[0] is ValueError for r in records)
    assert f"fd {a.fileno()}" in records[0].getMessage()
    poller.delete(a.fileno())


# --- readiness and interest -----------------------------------------------------------------------
def test_readable_fd_callback_gets_fd_and_mask(
    poller: Poller, run_polling: Callable[..., PollThread], stack: contextlib.ExitStack
) -> None:
    """A readable registered fd makes polling call callback(fd, mask) with EPOLLIN set."""
    a, b = socketpair(stack)
    poller.add_read(a.fileno())
    got: list[tuple[int, int]] = []
    done = threading.Event()

    def on_event(fd: int, ev: int) -> None:
        got.append((fd, ev))
        assert a.recv(16) == b"ping"
        done.set()

    run_polling(on_event)
    b.send(b"ping")
    assert done.wait(WAIT_S)
    sync(poller)
    assert len(got) == 1  # drained, so level-triggered epoll does not report it again
    fd, ev = got[0]
    assert fd == a.fileno()
    assert ev & unix.EPOLLIN
    assert not ev & unix.EPOLLOUT  # not asked for
    poller.delete(a.fileno())


def test_interest_changes_what_epoll_reports(poller: Poller, stack: contextlib.ExitStack) -> None:
    """add_read/mod_read_write/mod_read/mod_write/delete change the reported events (level-triggered)."""
    a, b = socketpair(stack)
    fd = a.fileno()
    poller.add_read(fd)
    assert fd not in ready_now(poller)  # writable, but only reading is watched

    b.send(b"data")
    assert ready_now(poller)[fd] & unix.EPOLLIN
    assert ready_now(poller)[fd] & unix.EPOLLIN  # level-triggered: still there, nothing read
    assert not ready_now(poller)[fd] & unix.EPOLLOUT

    poller.mod_read_write(fd)
    mask = ready_now(poller)[fd]
    assert mask & unix.EPOLLIN and mask & unix.EPOLLOUT

    poller.mod_read(fd)
    mask = ready_now(poller)[fd]
    assert mask & unix.EPOLLIN and not mask & unix.EPOLLOUT

    poller.mod_write(fd)
    mask = ready_now(poller)[fd]
    assert mask & unix.EPOLLOUT and not mask & unix.EPOLLIN

    poller.delete(fd)
    assert fd not in ready_now(poller)

    poller.add_write(fd)
    assert ready_now(poller)[fd] & unix.EPOLLOUT
    poller.delete(fd)
    poller.add_read_write(fd)
    mask = ready_now(poller)[fd]
    assert mask & unix.EPOLLIN and mask & unix.EPOLLOUT

    a.recv(16)
    mask = ready_now(poller)[fd]
    assert mask & unix.EPOLLOUT and not mask & unix.EPOLLIN  # drained
    poller.delete(fd)


def test_interest_errors(poller: Poller, stack: contextlib.ExitStack) -> None:
    """Adding an fd twice raises FileExistsError; modifying or deleting an unknown one FileNotFoundError."""
    a, _ = socketpair(stack)
    fd = a.fileno()
    poller.add_read(fd)
    with pytest.raises(FileExistsError):
        poller.add_read(fd)
    poller.delete(fd)
    with pytest.raises(FileNotFoundError):
        poller.delete(fd)
    with pytest.raises(FileNotFoundError):
        poller.mod_read(fd)


def test_interest_change_on_the_loop_thread(
    poller: Poller, run_polling: Callable[..., PollThread], stack: contextlib.ExitStack
) -> None:
    """mod_read_write from a task starts EPOLLOUT callbacks; mod_read in the callback stops them."""
    a, _ = socketpair(stack)
    fd = a.fileno()
    poller.add_read(fd)  # writable but not readable: nothing reported yet
    got: list[int] = []
    reported = threading.Event()

    def on_event(fd_: int, ev: int) -> None:
        got.append(ev)
        poller.mod_read(fd_)  # no longer interested in writability
        reported.set()

    run_polling(on_event)
    sync(poller)
    assert got == []
    poller.trigger(poller.mod_read_write, fd)
    assert reported.wait(WAIT_S)
    sync(poller)
    sync(poller)
    assert len(got) == 1
    assert got[0] & unix.EPOLLOUT
    poller.delete(fd)


def test_event_list_grows_with_many_ready_fds(
    poller: Poller,
    run_polling: Callable[..., PollThread],
    stack: contextlib.ExitStack,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """200 readable fds are all dispatched, and a full batch doubles the event list (128 → 256)."""
    sizes: list[int] = []
    real = unix.EpollEvents

    class RecordingEpollEvents(real):  # type: ignore[misc,valid-type]
        def __init__(self, size: int) -> None:
            sizes.append(size)
            super().__init__(size)

    monkeypatch.setattr(unix, "EpollEvents", RecordingEpollEvents)

    pairs = [socketpair(stack) for _ in range(200)]
    by_fd = {a.fileno(): a for a, _ in pairs}
    for a, b in pairs:
        poller.add_read(a.fileno())
        b.send(b"!")
    seen: list[int] = []
    all_seen = threading.Event()

    def on_event(fd: int, ev: int) -> None:
        assert ev & unix.EPOLLIN
        assert by_fd[fd].recv(8) == b"!"
        seen.append(fd)
        if len(seen) == len(pairs):
            all_seen.set()

    run_polling(on_event)
    assert all_seen.wait(WAIT_S)
    sync(poller)
    assert sorted(seen) == sorted(by_fd)  # each exactly once
    assert sizes[0] == INIT_POLL_EVENTS_CAP == 128
    assert 256 in sizes  # the first batch filled 128 slots: the list doubled
    for fd in by_fd:
        poller.delete(fd)
