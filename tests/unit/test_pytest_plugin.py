"""reactor.pytest_plugin, tested through real inner pytest sessions (pytester).

Until the pytest11 entry point is installed, the inner sessions load the
plugin with ``-p reactor.pytest_plugin``; once it is, pytest loads it by
itself and the tests pass no ``-p`` (registering one module under two names
is an error, see test_entry_point_name_*).
"""

from __future__ import annotations

import re
import sys
import textwrap
from importlib.metadata import entry_points
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

PLUGIN = "reactor.pytest_plugin"
PLUGIN_INSTALLED = any(ep.value == PLUGIN for ep in entry_points(group="pytest11"))
PLUGIN_ARGS: tuple[str, ...] = () if PLUGIN_INSTALLED else ("-p", PLUGIN)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
# Inner sessions skip the cache and hypothesis's plugin: the latter imports all of
# hypothesis (about a second) in every in-process session, as pytester unloads it
# after each one.
QUIET = ("-p", "no:cacheprovider", "-p", "no:hypothesispytest")


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest(*PLUGIN_ARGS, *QUIET, *args)


def test_fixtures_work_in_a_real_session(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import socket
        import urllib.request

        import pytest

        from reactor.testing import BackgroundServer, EchoHandler, RecordingHandler


        def test_echo(echo_server):
            assert isinstance(echo_server, BackgroundServer) and echo_server.running
            with socket.create_connection(echo_server.addr, timeout=2) as s:
                s.sendall(b"hi")
                assert s.recv(2) == b"hi"


        def test_recording(recording_server):
            assert isinstance(recording_server.handler, RecordingHandler)
            with socket.create_connection(recording_server.addr, timeout=2) as s:
                s.sendall(b"abc")
            recording_server.handler.assert_received(b"abc")


        def test_http(http_server):
            http_server.route("GET", "/x", b"hi")
            http_server.handler.route("GET", "/y", b"there", status=201)
            with urllib.request.urlopen(http_server.url + "/x", timeout=2) as r:
                assert r.read() == b"hi"
            with urllib.request.urlopen(http_server.url + "/y", timeout=2) as r:
                assert (r.status, r.read()) == (201, b"there")
            assert [r.path for r in http_server.requests] == ["/x", "/y"]


        def test_free_port(free_port):
            with socket.socket() as s:
                s.bind(("127.0.0.1", free_port))


        def test_unix_under_tmp_path(reactor_server, tmp_path):
            srv = reactor_server(EchoHandler(), "unix")
            assert srv.addr.startswith(str(tmp_path)) or srv.addr.startswith("/tmp/reactor-")
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(srv.addr)
                s.sendall(b"u")
                assert s.recv(1) == b"u"


        def test_udp_and_options(reactor_server):
            srv = reactor_server(EchoHandler(), "udp", num_event_loop=2)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(2)
                s.sendto(b"d", srv.addr)
                assert s.recv(1) == b"d"


        @pytest.mark.parametrize("recording_server", ["unix", "tcp"], indirect=True)
        def test_indirect(recording_server):
            assert recording_server.handler.received() == b""


        SERVERS = []


        def test_keeps_a_server(echo_server):
            SERVERS.append(echo_server)


        def test_it_was_stopped_at_teardown():
            [srv] = SERVERS
            assert not srv.running
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=10)


def test_assertion_in_a_handler_fails_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import socket

        import reactor


        class Picky(reactor.EventServer):
            def react(self, frame, c):
                assert frame == b"good", f"handler got {frame!r}"
                return b"ok", reactor.Action.NONE


        def test_bad(reactor_server):
            srv = reactor_server(Picky())
            with socket.create_connection(srv.addr, timeout=2) as s:
                s.sendall(b"evil")
                assert s.recv(2) == b""  # the test itself would pass


        def test_good(reactor_server):
            srv = reactor_server(Picky())
            with socket.create_connection(srv.addr, timeout=2) as s:
                s.sendall(b"good")
                assert s.recv(2) == b"ok"
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, failed=1)
    failed = [r for r in result.reprec.getreports("pytest_runtest_logreport") if r.failed]  # type: ignore[attr-defined]
    assert [(r.nodeid.split("::")[1], r.when) for r in failed] == [("test_bad", "call")]
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: handler got b'evil'*",
            "*raised by react() on thread reactor-loop-0 of the reactor server on tcp://127.0.0.1:*",
        ]
    )
    assert "def react(self, frame, c):" in result.stdout.str()  # the handler's own traceback


def test_handler_error_when_the_test_fails_too_is_a_teardown_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import socket

        import reactor


        class Crashy(reactor.EventServer):
            def react(self, frame, c):
                raise ZeroDivisionError("crashed in react")


        def test_it(reactor_server):
            srv = reactor_server(Crashy())
            with socket.create_connection(srv.addr, timeout=2) as s:
                s.sendall(b"x")
                assert s.recv(1) == b"answer", "the client saw the crash"
        """
    )
    result = run(pytester)
    result.assert_outcomes(failed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_it*", "*ZeroDivisionError: crashed in react*"])
    result.stdout.fnmatch_lines(["*FAILURES*", "*AssertionError: the client saw the crash*"])


def test_error_during_shutdown_is_a_teardown_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import reactor


        class BadShutdown(reactor.EventServer):
            def on_shutdown(self, server):
                raise RuntimeError("on_shutdown failed")


        def test_it(reactor_server):
            reactor_server(BadShutdown())
            reactor_server(BadShutdown())
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*RuntimeError: on_shutdown failed*", "*1 more reactor server(s) also failed*"])


def test_taken_errors_do_not_fail_the_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import socket

        import reactor


        class Crashy(reactor.EventServer):
            def react(self, frame, c):
                raise ValueError("expected")


        def test_it(reactor_server):
            srv = reactor_server(Crashy())
            with socket.create_connection(srv.addr, timeout=2) as s:
                s.sendall(b"x")
                assert s.recv(1) == b""
            [err] = srv.take_errors()
            assert str(err) == "expected"
        """
    )
    run(pytester).assert_outcomes(passed=1)


def test_under_xdist_with_two_workers(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    pytester.makepyfile(
        """
        import socket

        import pytest

        from reactor.testing import EchoHandler


        @pytest.mark.parametrize("i", range(4))
        @pytest.mark.parametrize("network", ["tcp", "unix"])
        def test_echo(reactor_server, network, i):
            srv = reactor_server(EchoHandler(), network)
            family = socket.AF_UNIX if network == "unix" else socket.AF_INET
            with socket.socket(family) as s:
                s.settimeout(2)
                s.connect(srv.addr)
                s.sendall(b"%d" % i)
                assert s.recv(1) == b"%d" % i


        def test_http(http_server):
            http_server.route("GET", "/", b"x")
            assert http_server.port
        """
    )
    result = pytester.runpytest_subprocess(*PLUGIN_ARGS, *QUIET, "-n", "2", timeout=60)
    result.assert_outcomes(passed=9)
    result.stdout.fnmatch_lines(["*2 workers*"])


def test_loaded_twice_by_the_same_name(pytester: pytest.Pytester) -> None:
    """``-p reactor.pytest_plugin`` plus ``pytest_plugins = [...]``: pytest dedups by name."""
    pytester.makeconftest(f"pytest_plugins = [{PLUGIN!r}]")
    pytester.makepyfile("def test_it(echo_server):\n    assert echo_server.running\n")
    result = pytester.runpytest("-p", PLUGIN, *QUIET) if not PLUGIN_INSTALLED else run(pytester)
    result.assert_outcomes(passed=1)


def _fake_entry_point(root: Path, name: str) -> Path:
    """A dist-info on a PYTHONPATH directory declaring ``[pytest11] name = reactor.pytest_plugin``."""
    dist = root / "ep" / "reactor_plugin_check-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: reactor-plugin-check\nVersion: 0\n")
    (dist / "entry_points.txt").write_text(f"[pytest11]\n{name} = {PLUGIN}\n")
    return root / "ep"


def test_entry_point_name_equal_to_the_module_dedups(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recommended entry point: every way of loading the plugin lands on the same name."""
    monkeypatch.setenv("PYTHONPATH", str(_fake_entry_point(pytester.path, PLUGIN)))
    pytester.makeconftest(f"pytest_plugins = [{PLUGIN!r}]")
    pytester.makepyfile("def test_it(echo_server):\n    assert echo_server.running\n")
    result = pytester.runpytest_subprocess("-p", PLUGIN, *QUIET, timeout=60)
    result.assert_outcomes(passed=1)


def test_entry_point_name_reactor_breaks_dash_p(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why the entry point is not named "reactor": ``-p reactor.pytest_plugin`` would then register
    the module a second time under another name, which pluggy refuses."""
    monkeypatch.setenv("PYTHONPATH", str(_fake_entry_point(pytester.path, "reactor")))
    pytester.makepyfile("def test_it(echo_server):\n    assert echo_server.running\n")
    result = pytester.runpytest_subprocess("-p", PLUGIN, *QUIET, timeout=60)
    assert result.ret != 0
    assert "Plugin already registered under a different name" in result.stderr.str() + result.stdout.str()


def _doc_examples() -> dict[str, str]:
    """docs/testing.md's ```python blocks that start with a ``# test_*.py`` file name."""
    text = DOCS.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    files = {}
    for block in blocks:
        first, _, body = block.partition("\n")
        m = re.fullmatch(r"# (test_\w+)\.py", first.strip())
        if m:
            files[m.group(1)] = body
    return files


@pytest.mark.skipif(not DOCS.exists(), reason="docs/testing.md not present")
def test_docs_examples(pytester: pytest.Pytester) -> None:
    """Every example in docs/testing.md is a complete test file, and passes as written."""
    files = _doc_examples()
    assert len(files) >= 7, sorted(files)
    pytester.makepyfile(**{name: textwrap.dedent(body) for name, body in files.items()})
    result = run(pytester)
    outcomes = result.parseoutcomes()
    n_tests = sum(len(re.findall(r"^def test_", body, flags=re.MULTILINE)) for body in files.values())
    assert outcomes.get("failed", 0) == 0 and outcomes.get("errors", 0) == 0, result.stdout.str()
    assert outcomes.get("passed", 0) >= n_tests, (outcomes, n_tests)


def test_importing_the_plugin_starts_nothing() -> None:
    """Importing the plugin must not start anything (it is imported by every pytest run once installed)."""
    import threading

    before = threading.active_count()
    __import__(PLUGIN)
    assert threading.active_count() == before
    assert sys.modules[PLUGIN].__name__ == PLUGIN
