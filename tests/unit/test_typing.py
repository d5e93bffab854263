"""Typed for users (issue 14): ``mypy --strict`` accepts typed user code, and catches what it should.

* ``tests/typing/`` holds a typed sample server and a typed sample test
  module (which pytest also runs); ``mypy --strict`` must pass on them (CI
  runs the same command after the tests, ``.ci/run``).
* A sample with mistakes must fail, each mistake reported: the types are
  real (an ``Any`` would let all of them through).
* ``reactor.options.ServeOptions`` (the ``**options`` keywords' types) lists
  exactly :class:`reactor.Options`' fields.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import reactor
from reactor.options import ServeOptions

ROOT = Path(__file__).resolve().parents[2]
TYPING = ROOT / "tests" / "typing"

needs_mypy = pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="mypy is not installed")


def mypy(*args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )


@needs_mypy
def test_typed_samples_pass_mypy_strict(tmp_path: Path) -> None:
    result = mypy(str(TYPING), cache=tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues found in 2 source files" in result.stdout


@needs_mypy
def test_mistakes_in_typed_code_are_reported(tmp_path: Path) -> None:
    sample = tmp_path / "mistakes.py"
    sample.write_text(textwrap.dedent(
        """
        import reactor
        from reactor.testing import EchoHandler, serve_in_background

        srv = serve_in_background(EchoHandler(), multicores=True)
        port: str = srv.port
        srv.handler.no_such_method()
        reactor.serve(EchoHandler(), "tcp://127.0.0.1:0", tcp_keepalive="30")
        reactor.Client(EchoHandler()).dial("tcp", 9000)
        """
    ))
    result = mypy(str(sample), cache=tmp_path / "cache")
    out = result.stdout
    assert result.returncode == 1, out + result.stderr
    for line, what in [(5, '"multicores"'), (6, 'expression has type "int", variable has type "str"'),
                       (7, '"EchoHandler" has no attribute "no_such_method"'), (8, '"tcp_keepalive"'),
                       (9, "dial")]:
        assert any(f"mistakes.py:{line}:" in x and what in x for x in out.splitlines()), (line, what, out)


def test_serve_options_lists_every_option() -> None:
    fields = {f.name for f in dataclasses.fields(reactor.Options)}
    assert set(ServeOptions.__annotations__) == fields
    assert ServeOptions.__total__ is False  # every keyword is optional
