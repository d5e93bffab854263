"""Shared fixtures: every test is checked for leaked fds and threads.

The fd check is the uvloop accounting idea: list /proc/self/fd before and
after each test. A server's loops close their fds before ``serve`` returns,
so a leak here is a real bug, not noise; a short grace period only covers
client sockets that the test's own garbage (stdlib socket objects) still
holds until the collector runs.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator

import pytest

from netsupport import open_fds

try:
    # Imported once for the whole session, on purpose: tests/unit/test_pytest_plugin.py
    # runs inner pytest sessions in this process (pytester), and pytester removes
    # the modules an inner session imported. cryptography's Rust core keeps its
    # classes from the first import, so a second import of the Python side makes
    # trustme fail ("curve must be an EllipticCurve instance") in every TLS test
    # that runs after it (the [io_uring] half of the suite runs after the unit tests).
    import trustme  # noqa: F401
except ImportError:
    pass

#: Every test runs on each backend (reactor's ``backend`` option), as the
#: ``[epoll]`` and ``[io_uring]`` variants: servers, clients, fixtures and
#: subprocesses take it from REACTOR_BACKEND (reactor.options.default_backend).
#: REACTOR_TEST_BACKENDS=epoll (say) runs one of them only.
BACKENDS = [b for b in os.environ.get("REACTOR_TEST_BACKENDS", "epoll,io_uring").split(",") if b]


@pytest.fixture(scope="session", autouse=True, params=BACKENDS)
def reactor_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The backend this test runs on. Session scope: pytest runs every test on one backend, then on the other,
    and module-scoped servers (tests/http) are started once per backend."""
    backend: str = request.param
    if backend == "io_uring":
        from reactor.internal.uring import probe

        ok, why = probe()
        if not ok:
            pytest.skip(f"the io_uring backend is not available here: {why}")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REACTOR_BACKEND", backend)
        yield backend


@pytest.fixture(autouse=True)
def backend_only(request: pytest.FixtureRequest, reactor_backend: str) -> None:
    """Skip a test marked ``epoll_only("why")`` on io_uring (a test of epoll's own mechanics)."""
    marker = request.node.get_closest_marker("epoll_only")
    if marker is not None and reactor_backend != "epoll":
        pytest.skip(f"epoll only: {marker.args[0] if marker.args else 'tests the epoll mechanics'}")


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves fds open or threads running after it ends."""
    if request.node.get_closest_marker("allow_leaks"):
        yield
        return
    before_fds = open_fds()  # {fd: what it points to}
    before_threads = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2.0
    while True:
        gc.collect()
        leaked_fds = {fd: target for fd, target in open_fds().items() if fd not in before_fds}
        leaked_threads = [
            t for t in threading.enumerate() if t not in before_threads and t.is_alive()
        ]
        if (not leaked_fds and not leaked_threads) or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    described = [f"{fd} -> {target}" for fd, target in sorted(leaked_fds.items())]
    assert not leaked_fds, f"fds leaked by the test: {described}"
    assert not leaked_threads, f"threads still running after the test: {leaked_threads}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "allow_leaks: skip the fd/thread leak check")
    config.addinivalue_line("markers", "epoll_only(why): a test of the epoll backend's own mechanics")


class BackgroundServer:
    """``reactor.serve`` on a background thread, for tests.

    ``start()`` returns once ``on_init_complete`` ran (the listener is bound and
    listening, so clients may connect; the loops accept as soon as they run).
    ``server`` is the :class:`reactor.Server`, ``addr`` its real address.
    ``stop()`` asks it to stop and joins the thread; ``join()`` waits for a
    server that stops by itself (an Action.SHUTDOWN). Either re-raises an
    exception that ``serve`` raised.
    """

    def __init__(self, handler: object, proto_addr: str = "tcp://127.0.0.1:0", **opts: object) -> None:
        import reactor

        self.handler = handler
        self.proto_addr = proto_addr
        self.opts = opts
        self.server: reactor.Server | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="test-serve", daemon=True)

    def _run(self) -> None:
        import reactor

        original = getattr(self.handler, "on_init_complete", None)

        def on_init_complete(server: reactor.Server) -> reactor.Action:
            self.server = server
            self._ready.set()
            return original(server) if original is not None else reactor.Action.NONE

        self.handler.on_init_complete = on_init_complete  # type: ignore[attr-defined]
        try:
            reactor.serve(self.handler, self.proto_addr, **self.opts)
        except BaseException as e:  # surfaced by start()/stop()/join()
            self.error = e
        finally:
            self._ready.set()

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        assert self._ready.wait(timeout), "server did not become ready"
        if self.error is not None:
            self._thread.join(timeout)
            raise self.error
        return self

    @property
    def addr(self):  # type: ignore[no-untyped-def]
        assert self.server is not None
        return self.server.addr

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def join(self, timeout: float = 10.0) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "serve() did not return"
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float = 10.0) -> None:
        if self._thread.is_alive() and self.server is not None:
            self.server.stop()
        self.join(timeout)


@pytest.fixture
def start_server() -> Iterator[object]:
    """Factory: ``start_server(handler, proto_addr="tcp://127.0.0.1:0", **options)`` → a started
    :class:`BackgroundServer`; every server still running at teardown is stopped and joined."""
    started: list[BackgroundServer] = []

    def factory(handler: object, proto_addr: str = "tcp://127.0.0.1:0", **opts: object) -> BackgroundServer:
        bg = BackgroundServer(handler, proto_addr, **opts)
        bg.start()  # a server that failed to start has already been joined
        started.append(bg)
        return bg

    yield factory
    for bg in started:
        bg.stop()
