"""Real clients against reactor.http's servers: curl, ab, wrk, h2load, http.client, urllib, requests, httpx, aiohttp.

Each client runs one scenario that a past bug broke or that a client is
known to be strict about (HEAD then GET on one connection, HTTP/1.0
keep-alive, ``Expect: 100-continue``, chunked uploads, pipelining), against
both servers of the ``http_target`` fixture. Command-line tools are
skipped when missing (``shutil.which``), except that
``test_ci_has_the_command_line_clients`` fails under ``CI=true`` when none
of curl, ab and wrk is installed: CI cannot skip them all silently.
docs/http.md has the table of client × scenario × server × test.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from http_support import BODY, Target

ROOT = Path(__file__).resolve().parents[2]
PIPELINE_LUA = ROOT / "bench" / "wrk" / "pipeline.lua"
UPLOAD = bytes(range(256)) * 1024  # 256 KiB, every byte value


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (Debian: apt-get install {APT_PACKAGES[name]})")
    return path


APT_PACKAGES = {"curl": "curl", "ab": "apache2-utils", "wrk": "wrk", "h2load": "nghttp2-client"}


def run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``args`` to completion; stdout and stderr as text with their CRLFs kept (text=True would drop them)."""
    r = subprocess.run(args, capture_output=True, timeout=timeout, check=False)
    return subprocess.CompletedProcess(args, r.returncode, r.stdout.decode("latin-1"), r.stderr.decode("latin-1"))


def uploaded_bodies(target: Target) -> list[bytes] | None:
    """The bodies the fixture recorded (None for the example, which discards them)."""
    handler = getattr(target.server, "handler", None)
    if target.kind != "fixture" or handler is None:
        return None
    return [r.body for r in handler.requests if r.method in ("POST", "PUT")]


@pytest.fixture
def upload_file(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "upload.bin"
    path.write_bytes(UPLOAD)
    yield path


def test_ci_has_the_command_line_clients() -> None:
    """Under CI=true, at least one of curl, ab, wrk must be installed (.ci/run installs them)."""
    if os.environ.get("CI") != "true":
        pytest.skip("only checked when CI=true")
    found = [t for t in ("curl", "ab", "wrk") if shutil.which(t)]
    assert found, "CI=true but none of curl, ab, wrk is installed: every real-client test would skip"


# --- curl -------------------------------------------------------------------------------------------------
@pytest.mark.timeout(60)
def test_curl_head_then_get_on_one_connection(http_target: Target) -> None:
    """curl -I URL --next URL: no "Excess found" (a HEAD answer with a body), the connection reused."""
    r = run([tool("curl"), "-sS", "-v", "-I", http_target.url, "--next", http_target.url])
    assert r.returncode == 0, r.stderr
    assert "Excess found" not in r.stderr
    assert "Re-using existing connection" in r.stderr
    assert r.stderr.count("< HTTP/1.1 200 OK") == 2
    # -I prints the HEAD answer's headers; the GET after it prints its body.
    assert r.stdout.startswith("HTTP/1.1 200 OK\r\n") and r.stdout.endswith("\r\n\r\n" + BODY.decode())


@pytest.mark.timeout(60)
def test_curl_keep_alive_reuse(http_target: Target) -> None:
    r = run([tool("curl"), "-sS", "-v", http_target.url, http_target.url, http_target.url])
    assert r.returncode == 0, r.stderr
    assert r.stdout == BODY.decode() * 3
    assert r.stderr.count("Re-using existing connection") == 2


@pytest.mark.timeout(60)
def test_curl_http10(http_target: Target) -> None:
    """HTTP/1.0: closed after the answer; with Connection: keep-alive, acknowledged and reused."""
    r = run([tool("curl"), "-sS", "-i", "--http1.0", http_target.url])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("HTTP/1.1 200 OK") and "Connection: close" in r.stdout
    r = run([tool("curl"), "-sS", "-v", "--http1.0", "-H", "Connection: keep-alive", http_target.url, http_target.url])
    assert r.returncode == 0, r.stderr
    assert "Connection: keep-alive" in r.stderr and "Re-using existing connection" in r.stderr


@pytest.mark.timeout(60)
def test_curl_expect_100_continue(http_target: Target, upload_file: Path) -> None:
    """curl waits up to 1 s for "100 Continue" before sending the body: the server must send it at once."""
    started = time.monotonic()
    r = run([tool("curl"), "-sS", "-v", "-H", "Expect: 100-continue", "--data-binary", f"@{upload_file}",
             http_target.url])
    took = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert "HTTP/1.1 100 Continue" in r.stderr and r.stdout == BODY.decode()
    assert took < 0.9, f"curl waited {took:.2f} s: no 100 Continue"
    bodies = uploaded_bodies(http_target)
    assert bodies is None or bodies[-1] == UPLOAD


@pytest.mark.timeout(60)
def test_curl_chunked_upload(http_target: Target, upload_file: Path) -> None:
    r = run([tool("curl"), "-sS", "-v", "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{upload_file}",
             http_target.url])
    assert r.returncode == 0, r.stderr
    assert "Transfer-Encoding: chunked" in r.stderr and r.stdout == BODY.decode()
    bodies = uploaded_bodies(http_target)
    assert bodies is None or bodies[-1] == UPLOAD


# --- ab, wrk, h2load ------------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_ab_keep_alive_20000(http_target: Target) -> None:
    """ab -k speaks HTTP/1.0 with Connection: Keep-Alive: without the acknowledgement it completes nothing."""
    r = run([tool("ab"), "-k", "-n", "20000", "-c", "20", "-s", "10", http_target.url], timeout=110)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"Complete requests:\s+20000\b", r.stdout), r.stdout
    assert re.search(r"Failed requests:\s+0\b", r.stdout), r.stdout
    assert re.search(r"Keep-Alive requests:\s+20000\b", r.stdout), r.stdout
    assert "Non-2xx" not in r.stdout


@pytest.mark.timeout(120)
def test_ab_without_keep_alive(http_target: Target) -> None:
    r = run([tool("ab"), "-n", "2000", "-c", "10", "-s", "10", http_target.url], timeout=110)
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"Complete requests:\s+2000\b", r.stdout) and re.search(r"Failed requests:\s+0\b", r.stdout)


def _wrk_report(stdout: str) -> dict[str, float]:
    line = next(line for line in stdout.splitlines() if line.startswith("{"))
    return json.loads(line)  # type: ignore[no-any-return]


@pytest.mark.timeout(60)
def test_wrk_plain(http_target: Target) -> None:
    r = run([tool("wrk"), "-t1", "-c20", "-d2s", "-s", str(ROOT / "bench" / "wrk" / "report.lua"), http_target.url])
    assert r.returncode == 0, r.stderr
    report = _wrk_report(r.stdout)
    assert report["requests"] > 100, r.stdout
    errors = {k: v for k, v in report.items() if k.startswith("errors_") and v}
    assert not errors, r.stdout


@pytest.mark.timeout(60)
def test_wrk_pipelined_16_deep(http_target: Target) -> None:
    r = run([tool("wrk"), "-t1", "-c20", "-d2s", "-s", str(PIPELINE_LUA), http_target.url, "--", "16"])
    assert r.returncode == 0, r.stderr
    report = _wrk_report(r.stdout)
    assert report["requests"] > 1000, r.stdout
    errors = {k: v for k, v in report.items() if k.startswith("errors_") and v}
    assert not errors, r.stdout


@pytest.mark.timeout(60)
def test_h2load_http1(http_target: Target) -> None:
    r = run([tool("h2load"), "--h1", "-n", "5000", "-c", "10", "-m", "4", http_target.url])
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"requests: 5000 total, 5000 started, 5000 done, 5000 succeeded, 0 failed", r.stdout), r.stdout
    assert "status codes: 5000 2xx" in r.stdout


# --- Python clients -----------------------------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_http_client_head_get_post_chunked_on_one_connection(http_target: Target) -> None:
    conn = http.client.HTTPConnection(http_target.host, http_target.port, timeout=5)
    try:
        conn.request("HEAD", "/")
        head = conn.getresponse()
        assert (head.status, head.read(), head.getheader("Content-Length")) == (200, b"", str(len(BODY)))
        conn.request("GET", "/")
        assert conn.getresponse().read() == BODY
        conn.request("POST", "/", body=UPLOAD)
        assert conn.getresponse().read() == BODY
        conn.request("POST", "/", body=iter([UPLOAD[:1000], UPLOAD[1000:]]), encode_chunked=True)
        assert conn.getresponse().read() == BODY
        sock = conn.sock
        conn.request("GET", "/")
        assert conn.getresponse().read() == BODY and conn.sock is sock  # one connection throughout
    finally:
        conn.close()
    bodies = uploaded_bodies(http_target)
    assert bodies is None or bodies[-2:] == [UPLOAD, UPLOAD]


@pytest.mark.timeout(30)
def test_urllib_get_and_post(http_target: Target) -> None:
    with urllib.request.urlopen(http_target.url, timeout=5) as resp:
        assert resp.status == 200 and resp.read() == BODY
    with urllib.request.urlopen(urllib.request.Request(http_target.url, data=b"x=1"), timeout=5) as resp:
        assert resp.read() == BODY
    with urllib.request.urlopen(urllib.request.Request(http_target.url, method="HEAD"), timeout=5) as resp:
        assert resp.status == 200 and resp.read() == b""


@pytest.mark.timeout(30)
def test_requests_session(http_target: Target) -> None:
    requests = pytest.importorskip("requests")
    with requests.Session() as s:
        head = s.head(http_target.url, timeout=5)
        assert head.status_code == 200 and head.content == b""
        assert s.get(http_target.url, timeout=5).content == BODY
        assert s.post(http_target.url, data=UPLOAD, timeout=5).content == BODY
        assert s.post(http_target.url, data=iter([UPLOAD[:7], UPLOAD[7:]]), timeout=5).content == BODY  # chunked
        assert s.get(http_target.url, timeout=5).content == BODY


@pytest.mark.timeout(30)
def test_httpx_client(http_target: Target) -> None:
    httpx = pytest.importorskip("httpx")
    with httpx.Client(timeout=5) as client:
        head = client.head(http_target.url)
        assert head.status_code == 200 and head.content == b""
        assert client.get(http_target.url).content == BODY
        assert client.post(http_target.url, content=UPLOAD).content == BODY
        assert client.post(http_target.url, content=iter([UPLOAD[:5], UPLOAD[5:]])).content == BODY  # chunked
        assert client.get(http_target.url).content == BODY


@pytest.mark.timeout(30)
def test_aiohttp_head_then_get_on_one_session(http_target: Target) -> None:
    """aiohttp reuses the connection: a body after the HEAD answer became "Bad status line ... Hello World!"."""
    aiohttp = pytest.importorskip("aiohttp")

    async def main() -> list[tuple[int, bytes]]:
        connector = aiohttp.TCPConnector(limit=1)
        timeout = aiohttp.ClientTimeout(total=5)
        out = []
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            for method in ("HEAD", "GET", "HEAD", "POST", "GET"):
                async with session.request(method, http_target.url, data=b"x" if method == "POST" else None) as r:
                    out.append((r.status, await r.read()))
        return out

    got = asyncio.run(main())
    assert got == [(200, b""), (200, BODY), (200, b""), (200, BODY), (200, BODY)]
