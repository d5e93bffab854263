"""pytest plugin: throwaway reactor servers as fixtures.

Registered through the ``pytest11`` entry point, so installing reactor-cffi
is enough; without the entry point, load it with ``-p reactor.pytest_plugin``
or ``pytest_plugins = ["reactor.pytest_plugin"]`` in a root conftest.py.
The entry point is named like the module, ``reactor.pytest_plugin``: pytest
dedups plugins by name, so all three ways can be combined (under any other
name, ``-p reactor.pytest_plugin`` would register the module twice, which
pluggy refuses). Disable it with ``-p no:reactor.pytest_plugin``.

Fixtures (all function-scoped; every server they start is stopped and its
threads joined at teardown):

* ``reactor_server``: a factory, ``reactor_server(handler, network="tcp",
  **options)`` → a started :class:`reactor.testing.BackgroundServer`.
  ``network`` is ``"tcp"`` (127.0.0.1), ``"tcp6"`` (::1), ``"udp"``,
  ``"udp6"``, ``"unix"`` (a socket file under ``tmp_path``), or a whole
  address such as ``"tcp://127.0.0.1:0"``.
* ``echo_server``, ``recording_server``, ``http_server``: a server already
  running an :class:`~reactor.testing.EchoHandler`,
  :class:`~reactor.testing.RecordingHandler` or (empty route table)
  :class:`~reactor.testing.HTTPHandler`. Parametrize them indirectly with a
  network name to change the network.
* ``free_port``: a TCP port number that was free a moment ago.
* TLS (needs ``trustme``, in the ``test`` extra; tests using these fixtures
  are skipped without it): ``tls_certificates``, a session-wide
  :class:`~reactor.testing.TLSCertificates` (a throwaway CA and a
  certificate for localhost, 127.0.0.1 and ::1; ``.ca_file`` for curl and
  requests); ``tls_server_context`` and ``tls_client_context``, fresh
  contexts using it (change them freely: ALPN, versions); and
  ``https_server``, ``http_server`` over TLS (``https_server.url`` is
  ``https://127.0.0.1:PORT``).

Exceptions raised by callbacks on the servers' loop threads fail the test
that started them: right after the test function returns (so the test is
reported as failed with the callback's exception), or at teardown for
those raised while the server shuts down.

Only ephemeral ports and per-test paths are used, so it runs unchanged
under pytest-xdist.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import sys
import tempfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import pytest

from .options import Options, ServeOptions
from .testing import (
    DEFAULT_TIMEOUT,
    BackgroundServer,
    EchoHandler,
    HTTPHandler,
    RecordingHandler,
    ServerFactory,
    TLSCertificates,
    serve_in_background,
)

if sys.version_info >= (3, 11):
    from typing import Unpack
elif TYPE_CHECKING:  # 3.10: for type checkers only (they bundle typing_extensions); nothing at run time
    from typing_extensions import Unpack

H = TypeVar("H")

__all__ = [
    "echo_server",
    "free_port",
    "http_server",
    "https_server",
    "reactor_server",
    "recording_server",
    "tls_certificates",
    "tls_client_context",
    "tls_server_context",
]

_SERVERS = pytest.StashKey[list[BackgroundServer[Any]]]()

_LOOPBACK = {
    "tcp": "tcp://127.0.0.1:0",
    "tcp4": "tcp4://127.0.0.1:0",
    "tcp6": "tcp6://[::1]:0",
    "udp": "udp://127.0.0.1:0",
    "udp4": "udp4://127.0.0.1:0",
    "udp6": "udp6://[::1]:0",
}
#: sun_path holds 108 bytes including the terminating NUL.
_MAX_UNIX_PATH = 107


class _UnixPaths:
    """Socket paths under the test's tmp_path (or a short temporary directory if that is too long)."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._request = request
        self._dir: str | None = None
        self._own_dir: str | None = None
        self._n = 0

    def new(self) -> str:
        self._n += 1
        name = f"reactor-{self._n}.sock"
        if self._dir is None:
            try:
                self._dir = str(self._request.getfixturevalue("tmp_path"))
            except Exception:
                self._dir = ""
            if not self._dir or len(os.fsencode(os.path.join(self._dir, name))) + 8 > _MAX_UNIX_PATH:
                self._dir = self._own_dir = tempfile.mkdtemp(prefix="reactor-")
        return os.path.join(self._dir, name)

    def cleanup(self) -> None:
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)


def _stop_all(servers: list[BackgroundServer[Any]]) -> None:
    """Stop every server (newest first) even if some fail; raise the first failure, noting the others."""
    failures: list[BaseException] = []
    while servers:
        srv = servers.pop()
        try:
            srv.stop()
        except Exception as e:
            failures.append(e)
    if failures:
        first = failures[0]
        if len(failures) > 1 and hasattr(first, "add_note"):
            first.add_note(f"{len(failures) - 1} more reactor server(s) also failed: {failures[1:]!r}")
        raise first


@pytest.fixture
def reactor_server(request: pytest.FixtureRequest) -> Iterator[ServerFactory]:
    """Factory: ``reactor_server(handler, network="tcp", **options)`` → a started background server.

    ``network``: ``"tcp"``, ``"tcp6"``, ``"udp"``, ``"udp6"``, ``"unix"`` or
    a full address (``"tcp://127.0.0.1:0"``). ``options`` are
    :func:`reactor.serve` keywords, plus ``timeout`` and ``raise_errors``
    (see :func:`~reactor.testing.serve_in_background`). Servers are stopped
    at teardown, and errors recorded on their threads fail the test.
    Typed as :class:`reactor.testing.ServerFactory`.
    """
    servers: list[BackgroundServer[Any]] = request.node.stash.setdefault(_SERVERS, [])
    paths = _UnixPaths(request)

    def start(
        handler: H,
        network: str = "tcp",
        *,
        timeout: float = DEFAULT_TIMEOUT,
        raise_errors: bool = True,
        options: Options | None = None,
        **opts: Unpack[ServeOptions],
    ) -> BackgroundServer[H]:
        if "://" in network:
            proto_addr = network
        elif network == "unix":
            proto_addr = "unix://" + paths.new()
        elif network in _LOOPBACK:
            proto_addr = _LOOPBACK[network]
        else:
            raise ValueError(
                f"reactor_server: unknown network {network!r}; use one of "
                f"{', '.join([*_LOOPBACK, 'unix'])} or a full address like 'tcp://127.0.0.1:0'"
            )
        srv = serve_in_background(
            handler, proto_addr, timeout=timeout, raise_errors=raise_errors, options=options, **opts
        )
        servers.append(srv)
        return srv

    try:
        yield start
    finally:
        try:
            _stop_all(servers)
        finally:
            paths.cleanup()


@pytest.hookimpl(trylast=True)
def pytest_runtest_call(item: pytest.Item) -> None:
    """After a test function returned normally: fail it with the first callback exception of its servers.

    ``trylast``: runs after pytest's own implementation, which ran the test;
    when the test itself failed this is not reached, and the exceptions
    surface at teardown instead.
    """
    for srv in item.stash.get(_SERVERS, ()):
        srv.raise_errors()


def _network(request: pytest.FixtureRequest) -> str:
    return getattr(request, "param", "tcp")


@pytest.fixture
def echo_server(request: pytest.FixtureRequest, reactor_server: ServerFactory) -> BackgroundServer[EchoHandler]:
    """A running :class:`~reactor.testing.EchoHandler` server (tcp on 127.0.0.1 unless parametrized)."""
    return reactor_server(EchoHandler(), _network(request))


@pytest.fixture
def recording_server(
    request: pytest.FixtureRequest, reactor_server: ServerFactory
) -> BackgroundServer[RecordingHandler]:
    """A running :class:`~reactor.testing.RecordingHandler` server; ``recording_server.handler`` records."""
    return reactor_server(RecordingHandler(), _network(request))


@pytest.fixture
def http_server(request: pytest.FixtureRequest, reactor_server: ServerFactory) -> BackgroundServer[HTTPHandler]:
    """A running :class:`~reactor.testing.HTTPHandler` with no routes yet (everything is 404).

    Add routes with ``http_server.route("GET", "/x", b"hi")``, or expectations
    in pytest-httpserver's style with ``http_server.expect_request("/x").respond_with_json(...)``:
    then a request no expectation or route answers gets a 500 and fails the
    test at teardown (``http_server.fail_at_stop = False`` allows it).
    ``http_server.url`` is its base URL (``url_for("/x")``), ``http_server.log``
    the ``(request, response)`` pairs so far.
    """
    return reactor_server(HTTPHandler(), _network(request))


@pytest.fixture(scope="session")
def tls_certificates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSCertificates]:
    """A throwaway CA and a server certificate for localhost/127.0.0.1/::1, for the whole session.

    Skips the test when ``trustme`` is not installed. Its PEM files
    (``ca_file``, ``cert_file``, ``key_file``) live in a session temporary directory.
    """
    pytest.importorskip("trustme", reason="TLS fixtures need trustme (pip install 'reactor-cffi[test]')")
    with TLSCertificates(directory=tmp_path_factory.mktemp("reactor-tls")) as certs:
        yield certs


@pytest.fixture
def tls_server_context(tls_certificates: TLSCertificates) -> ssl.SSLContext:
    """A fresh server-side ``ssl.SSLContext`` with ``tls_certificates``' server certificate (for ``tls=``)."""
    return tls_certificates.server_context()


@pytest.fixture
def tls_client_context(tls_certificates: TLSCertificates) -> ssl.SSLContext:
    """A fresh client-side ``ssl.SSLContext`` that trusts ``tls_certificates``' CA and checks host names."""
    return tls_certificates.client_context()


@pytest.fixture
def https_server(
    request: pytest.FixtureRequest, reactor_server: ServerFactory, tls_server_context: ssl.SSLContext
) -> BackgroundServer[HTTPHandler]:
    """:func:`http_server` over TLS: ``https_server.url`` is ``https://127.0.0.1:PORT``.

    Clients trust it through ``tls_client_context`` (an ``ssl.SSLContext``)
    or ``tls_certificates.ca_file`` (a PEM file: ``curl --cacert``,
    ``requests.get(url, verify=...)``).
    """
    return reactor_server(HTTPHandler(), _network(request), tls=tls_server_context)


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free when the fixture ran (bound to port 0, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
