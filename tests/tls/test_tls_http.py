"""HTTPS: the HTTP example with ``--tls-cert``/``--tls-key`` against real clients, and pipelining over TLS.

Clients: the stdlib's ``http.client`` and ``ssl``, ``requests``, ``httpx``,
and, when installed, ``curl --cacert``, ``wrk https://``, ``openssl
s_client`` (each skipped with the reason when missing; .ci/run installs them).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from netsupport import free_port, listening_line, process_with_stderr
from reactor.examples.http import HTTPCodec, HTTPServer
from reactor.testing import BackgroundServer, TLSCertificates, serve_in_background
from tls_support import TIMEOUT, recv_exactly, tls_connect

REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
ANSWER = re.compile(rb"HTTP/1\.1 200 OK\r\n.*?\r\n\r\nHello World!\r\n", re.DOTALL)


@pytest.fixture
def example(tls_certificates: TLSCertificates) -> Iterator[int]:
    """``python -m reactor.examples.http --tls-cert ... --tls-key ...`` as a process; yields its port."""
    port = free_port()
    argv = [sys.executable, "-m", "reactor.examples.http", "--host", "127.0.0.1", "--port", str(port),
            "--tls-cert", tls_certificates.cert_file, "--tls-key", tls_certificates.key_file]
    with process_with_stderr(argv) as proc:
        line = listening_line(proc)
        assert f"https://127.0.0.1:{port}" in line, line
        yield port
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0


def test_example_with_http_client_requests_and_httpx(example: int, tls_certificates: TLSCertificates) -> None:
    conn = http.client.HTTPSConnection("localhost", example, timeout=TIMEOUT,
                                       context=tls_certificates.client_context())
    try:
        for _ in range(3):  # keep-alive: one connection, three requests
            conn.request("GET", "/")
            r = conn.getresponse()
            assert r.status == 200 and r.read() == b"Hello World!\r\n"
        assert conn.sock.selected_alpn_protocol() in (None, "http/1.1")
    finally:
        conn.close()
    requests = pytest.importorskip("requests")
    r = requests.get(f"https://localhost:{example}/", verify=tls_certificates.ca_file, timeout=TIMEOUT)
    assert r.status_code == 200 and r.text == "Hello World!\r\n"
    httpx = pytest.importorskip("httpx")
    with httpx.Client(verify=tls_certificates.client_context(), timeout=TIMEOUT) as client:
        r = client.get(f"https://127.0.0.1:{example}/")
        assert r.status_code == 200 and r.http_version == "HTTP/1.1"


def test_example_pipelined_https(example: int, tls_certificates: TLSCertificates) -> None:
    """100 pipelined requests in one TLS write, then one split over three records: 101 answers, in order."""
    with tls_connect(("127.0.0.1", example), tls_certificates.client_context()) as s:
        s.sendall(REQUEST * 100)
        data = b""
        while len(ANSWER.findall(data)) < 100:
            chunk = s.recv(65536)
            assert chunk, "EOF"
            data += chunk
        assert len(ANSWER.findall(data)) == 100 and not ANSWER.sub(b"", data)
        for part in (REQUEST[:5], REQUEST[5:20], REQUEST[20:]):
            s.sendall(part)
        one = b""
        while not ANSWER.search(one):
            one += s.recv(65536)
        assert len(ANSWER.findall(one)) == 1


def test_example_plain_http_to_the_tls_port_is_refused(example: int, tls_certificates: TLSCertificates) -> None:
    with socket.create_connection(("127.0.0.1", example), timeout=TIMEOUT) as s:
        s.sendall(REQUEST)
        assert s.recv(100) == b""  # closed (OpenSSL's "http request" error, logged by the server)
    r = http.client.HTTPSConnection("localhost", example, timeout=TIMEOUT, context=tls_certificates.client_context())
    r.request("GET", "/")
    assert r.getresponse().status == 200  # and the server goes on
    r.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (apt-get install curl)")
def test_curl_with_cacert(example: int, tls_certificates: TLSCertificates) -> None:
    out = subprocess.run(
        ["curl", "-sS", "--fail", "--cacert", tls_certificates.ca_file, "-w", "%{http_version} %{ssl_verify_result}",
         f"https://localhost:{example}/", f"https://127.0.0.1:{example}/"],
        capture_output=True, timeout=60, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(b"Hello World!\r\n") == 2 and out.stdout.endswith(b"1.1 0"), out.stdout


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed (apt-get install curl)")
def test_curl_refuses_an_untrusted_certificate(example: int) -> None:
    out = subprocess.run(["curl", "-sS", f"https://localhost:{example}/"], capture_output=True, timeout=60,
                         check=False, env=dict(os.environ, CURL_CA_BUNDLE="/dev/null"))
    assert out.returncode == 60 or b"certificate" in out.stderr, (out.returncode, out.stderr)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk_over_https(example: int) -> None:
    """wrk (it does not verify certificates) for 2 s over 8 TLS connections: no errors, every answer 200."""
    out = subprocess.run(["wrk", "-t1", "-c8", "-d2s", f"https://127.0.0.1:{example}/"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    m = re.search(r"(\d+) requests in", out.stdout)
    assert m and int(m.group(1)) > 100, out.stdout
    assert "Socket errors" not in out.stdout and "Non-2xx" not in out.stdout, out.stdout


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is not installed (apt-get install openssl)")
@pytest.mark.parametrize("version", ["-tls1_2", "-tls1_3"])
def test_openssl_s_client(example: int, tls_certificates: TLSCertificates, version: str) -> None:
    """openssl s_client: the certificate verifies (return code 0), ALPN http/1.1, a request answered."""
    out = subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{example}", "-servername", "localhost", version,
         "-CAfile", tls_certificates.ca_file, "-alpn", "http/1.1", "-ign_eof"],
        input=REQUEST.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"),
        capture_output=True, timeout=60, check=False,
    )
    text = out.stdout + out.stderr
    assert b"Hello World!" in out.stdout, text
    assert b"Verification: OK" in text or b"Verify return code: 0" in text, text
    assert b"ALPN protocol: http/1.1" in text, text
    assert (b"TLSv1.3" if version == "-tls1_3" else b"TLSv1.2") in text, text


# --- the https_server fixture and a pipelining HTTP server on reactor's codec ------------------------------
def test_https_server_fixture(https_server: BackgroundServer[Any], tls_certificates: TLSCertificates) -> None:
    https_server.route("GET", "/hello", b"hi")
    assert https_server.url.startswith("https://127.0.0.1:")
    requests = pytest.importorskip("requests")
    r = requests.get(https_server.url + "/hello", verify=tls_certificates.ca_file, timeout=TIMEOUT)
    assert r.status_code == 200 and r.content == b"hi"


def test_pipelined_https_with_the_codec_in_process(tls_certificates: TLSCertificates) -> None:
    """The example's HTTPServer and HTTPCodec under serve_in_background with TLS: 1000 requests pipelined."""
    with serve_in_background(HTTPServer(quiet=True), tls=tls_certificates.server_context(), codec=HTTPCodec()) as srv:
        with tls_connect(srv.addr, tls_certificates.client_context()) as s:
            s.sendall(REQUEST * 1000)
            data = b""
            while len(ANSWER.findall(data)) < 1000:
                chunk = s.recv(1 << 20)
                assert chunk
                data += chunk
            assert not ANSWER.sub(b"", data)


def test_workers_2_echo_example(tls_certificates: TLSCertificates) -> None:
    """``python -m reactor.examples.echo --workers 2 --tls-cert ...``: both processes serve TLS."""
    port = free_port()
    argv = [sys.executable, "-m", "reactor.examples.echo", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "2", "--tls-cert", tls_certificates.cert_file, "--tls-key", tls_certificates.key_file]
    with process_with_stderr(argv) as proc:
        listening_line(proc)
        listening_line(proc)  # one line per worker
        for i in range(20):  # the kernel spreads them over the two processes' listeners
            with tls_connect(("127.0.0.1", port), tls_certificates.client_context()) as s:
                payload = b"worker echo %d " % i * 1000
                s.sendall(payload)
                assert recv_exactly(s, len(payload)) == payload
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0


def test_example_refuses_a_bad_key(tls_certificates: TLSCertificates, tmp_path: Any) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    out = subprocess.run([sys.executable, "-m", "reactor.examples.echo", "--port", "0", "--tls-cert",
                          tls_certificates.cert_file, "--tls-key", str(bad)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "cannot load the TLS certificate or key" in out.stderr, out.stderr
