"""Throwaway certificates for TLS tests: a CA made on the spot by ``trustme``, contexts that use it, PEM files.

A minimal TLS test::

    import socket
    from reactor.testing import EchoHandler, TLSCertificates, serve_in_background

    def test_tls_echo():
        certs = TLSCertificates()
        with serve_in_background(EchoHandler(), tls=certs.server_context()) as srv:
            with socket.create_connection(srv.addr, timeout=5) as raw:
                with certs.client_context().wrap_socket(raw, server_hostname="localhost") as s:
                    s.sendall(b"ping")
                    assert s.recv(4) == b"ping"

The pytest plugin wraps this in fixtures (``tls_certificates``,
``tls_server_context``, ``tls_client_context``, ``https_server``; see
docs/testing.md). ``trustme`` is in the ``test`` extra
(``pip install 'reactor-cffi[test]'``); without it, creating a
:class:`TLSCertificates` raises an ``ImportError`` saying so, and the
fixtures skip the tests that use them.
"""

from __future__ import annotations

import os
import shutil
import ssl
import tempfile
import threading
from typing import Any

__all__ = ["DEFAULT_HOSTNAMES", "TLSCertificates"]

#: The names the server certificate is valid for: what a loopback test connects to.
DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1", "::1")


def _trustme() -> Any:
    try:
        import trustme
    except ImportError as e:  # pragma: no cover - the test extra installs it
        raise ImportError(
            "reactor.testing.TLSCertificates needs trustme: pip install trustme (or 'reactor-cffi[test]')"
        ) from e
    return trustme


class TLSCertificates:
    """A throwaway certificate authority and a server certificate it signed, for tests only.

    * :meth:`server_context` / :meth:`client_context`: contexts
      for ``serve(tls=...)`` and for clients (``wrap_socket``,
      ``Client.dial(tls=...)``, ``httpx``); the client one trusts the CA and
      checks host names.
    * :attr:`ca_file`, :attr:`cert_file`, :attr:`key_file`: the same as PEM
      files, for tools (``curl --cacert``, ``requests``' ``verify=``,
      ``openssl s_client -CAfile``, ``python -m reactor.examples.http
      --tls-cert ... --tls-key ...``). Written on first use into a
      temporary directory that :meth:`cleanup` removes.
    * :meth:`issue`: another certificate from the same CA (a second name
      for SNI, an expired one, a client certificate for mutual TLS).
    """

    def __init__(self, *hostnames: str, directory: str | os.PathLike[str] | None = None) -> None:
        """Make the CA and a server certificate for ``hostnames`` (default :data:`DEFAULT_HOSTNAMES`).

        ``directory``: where the PEM files go (default: a new temporary
        directory, removed by :meth:`cleanup`).
        """
        trustme = _trustme()
        #: The ``trustme.CA``.
        self.ca = trustme.CA()
        #: The names the server certificate is valid for.
        self.hostnames = hostnames or DEFAULT_HOSTNAMES
        #: The server's ``trustme.LeafCert``.
        self.server_cert = self.ca.issue_cert(*self.hostnames)
        self._dir = None if directory is None else os.fspath(directory)
        self._own_dir: str | None = None
        self._files: dict[str, str] = {}
        self._lock = threading.Lock()

    def issue(self, *hostnames: str, **kwargs: Any) -> Any:
        """Another certificate signed by the CA (``trustme.CA.issue_cert``: ``not_after=`` for an expired one)."""
        return self.ca.issue_cert(*hostnames, **kwargs)

    def server_context(self, cert: Any = None) -> ssl.SSLContext:
        """A server-side context (``PROTOCOL_TLS_SERVER``) with the server certificate (or ``cert``)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        (cert or self.server_cert).configure_cert(ctx)
        return ctx

    def client_context(self, cert: Any = None) -> ssl.SSLContext:
        """A client-side context (``PROTOCOL_TLS_CLIENT``: verifies certificates and host names) trusting the CA.

        ``cert``: a client certificate to present (mutual TLS; see :meth:`issue`).
        """
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ca.configure_trust(ctx)
        if cert is not None:
            cert.configure_cert(ctx)
        return ctx

    @property
    def ca_file(self) -> str:
        """The CA certificate as a PEM file (``curl --cacert``, ``requests.get(url, verify=...)``)."""
        return self._file("ca.pem", self.ca.cert_pem.bytes())

    @property
    def cert_file(self) -> str:
        """The server certificate chain as a PEM file (``--tls-cert``)."""
        return self._file("cert.pem", b"".join(blob.bytes() for blob in self.server_cert.cert_chain_pems))

    @property
    def key_file(self) -> str:
        """The server's private key as a PEM file (``--tls-key``)."""
        return self._file("key.pem", self.server_cert.private_key_pem.bytes())

    def _file(self, name: str, data: bytes) -> str:
        with self._lock:
            path = self._files.get(name)
            if path is None:
                if self._dir is None:
                    self._dir = self._own_dir = tempfile.mkdtemp(prefix="reactor-tls-")
                path = os.path.join(self._dir, name)
                with open(path, "wb") as f:
                    f.write(data)
                self._files[name] = path
            return path

    def cleanup(self) -> None:
        """Remove the PEM files' temporary directory (if this object made one)."""
        with self._lock:
            if self._own_dir is not None:
                shutil.rmtree(self._own_dir, ignore_errors=True)
                self._own_dir = self._dir = None
            self._files.clear()

    def __enter__(self) -> TLSCertificates:
        """The certificates themselves; leaving the block calls :meth:`cleanup`."""
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<TLSCertificates for {', '.join(self.hostnames)}>"
