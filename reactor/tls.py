"""TLS on the reactor: one ``ssl.SSLObject`` over two ``ssl.MemoryBIO`` per connection, run by the loop.

gnet counterpart: none. gnet v1 and v2 have no TLS (``gnet-io/tls`` is a
separate work in progress); the designs this follows are asyncio's
``Lib/asyncio/sslproto.py`` and uvloop's ``sslproto.pyx``: the kernel moves
plain TCP bytes, and the TLS state machine runs in memory on the event
loop's thread, with no extra thread and no blocking call.

How the bytes flow (docs/architecture.md, "TLS", has the diagram)::

    read(2) ──ciphertext──▶ incoming BIO ──SSLObject.read──▶ plaintext ──▶ codec ──▶ react
    write(2) ◀──outbound queue◀──ciphertext── outgoing BIO ◀──SSLObject.write── plaintext ◀── react

* :class:`TLSSession` is one connection's TLS state: the ``SSLObject``, its
  two BIOs, the handshake state, ``close_notify`` in both directions, and
  the :class:`TLSInfo` handlers see as ``c.tls``. It never touches a socket:
  the connection (``Conn``, which owns it) feeds it what ``read(2)`` brought
  and sends what it produces through the connection's ordinary outbound
  path, so write ordering, ``write_buffer_cap`` and the epoll interest state
  machine are the same with and without TLS.
* Ciphertext never piles up: the incoming BIO is decrypted completely after
  every read (what stays is at most one incomplete record, < 17 KiB), and the
  outgoing BIO is drained into the outbound queue at the end of every batch
  (and in the middle of one past ``FLUSH_THRESHOLD``), where the usual
  bounds apply. :meth:`TLSSession.release` drops the ``SSLObject`` and the
  BIOs when the connection closes.
* Post-handshake messages (TLS 1.3 session tickets, key updates) are handled
  inside ``SSLObject.read`` by OpenSSL: such a read yields no plaintext, and
  a key update may leave our own answer in the outgoing BIO, which is why
  the connection flushes after every read, not only after writes.

What is checked up front (:func:`check_context`): a ``tls=`` that is not an
``ssl.SSLContext`` is a ``TypeError``; a context made for the other side
(``PROTOCOL_TLS_CLIENT`` given to ``serve``, ``PROTOCOL_TLS_SERVER`` given to
``Client.dial``) is a ``ValueError``. ``check_hostname`` and ``purpose`` say
nothing reliable about the side; ``SSLContext.protocol`` does.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from typing import Any

__all__ = [
    "CLOSE_NOTIFY",
    "FLUSH_THRESHOLD",
    "OPENED",
    "WANT_READ",
    "WRITE_SLICE",
    "SNIRecorder",
    "TLSInfo",
    "TLSSession",
    "check_context",
    "record_sni",
]

#: ``Conn.tls_receive``/``tls_decrypt`` results besides a plaintext count
#: (> 0): nothing more to decrypt until the next read; the handshake has just
#: completed (the loop opens the connection, then decrypts on); the peer sent
#: ``close_notify`` (an orderly end of its stream: the loop treats it as EOF).
WANT_READ = -1
OPENED = -2
CLOSE_NOTIFY = -3

#: Ciphertext held in the outgoing BIO during a batch before it is moved to
#: the outbound queue anyway, so that ``write_buffer_cap`` sees a long batch
#: of answers (a large pipelined read) before it has all been encrypted.
FLUSH_THRESHOLD = 256 * 1024
#: Plaintext encrypted per ``SSLObject.write``: a 64 MiB write costs 64 MiB of
#: ciphertext in the outbound queue, never another 64 MiB inside the BIO too.
WRITE_SLICE = 256 * 1024

_HANDSHAKING = 0
_OPEN = 1
_CLOSED = 2  # released, or failed for good

_WantRead = ssl.SSLWantReadError
_WantWrite = ssl.SSLWantWriteError
_SSLError = ssl.SSLError

# The server name a client asked for (SNI) reaches Python only through
# SSLContext.sni_callback, called inside do_handshake on the thread running
# it. The recorder below leaves it here, and TLSSession.handshake picks it up
# right after the call that ran the callback: one loop thread runs one
# handshake step at a time, so a thread-local slot cannot mix connections.
_sni = threading.local()


def check_context(ctx: object, *, server_side: bool, what: str) -> ssl.SSLContext | None:
    """``ctx`` if it is an ``ssl.SSLContext`` for this side (or None); else the error ``what`` should raise.

    :raises TypeError: ``ctx`` is neither None nor an ``ssl.SSLContext``.
    :raises ValueError: a client-side context (``PROTOCOL_TLS_CLIENT``) to
        serve with, or a server-side one (``PROTOCOL_TLS_SERVER``) to dial with.
        The generic ``PROTOCOL_TLS`` is accepted on both sides.
    """
    if ctx is None:
        return None
    if not isinstance(ctx, ssl.SSLContext):
        raise TypeError(f"{what} takes an ssl.SSLContext (or None), got {type(ctx).__name__} {ctx!r:.80}")
    wrong = ssl.PROTOCOL_TLS_CLIENT if server_side else ssl.PROTOCOL_TLS_SERVER
    if ctx.protocol == wrong:
        side, other = ("server", "ssl.PROTOCOL_TLS_SERVER") if server_side else ("client", "ssl.PROTOCOL_TLS_CLIENT")
        raise ValueError(
            f"{what} needs a {side}-side context: this one was made with {ctx.protocol!r}; use "
            f"ssl.SSLContext({other})" + (" or ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)"
                                          if server_side else " or ssl.create_default_context()")
        )
    return ctx


class SNIRecorder:
    """The ``sni_callback`` reactor installs on a server context: notes the requested name, then chains.

    ``inner`` is the callback the context had (it still runs, and may switch
    ``ssl_object.context`` to pick a certificate, as the stdlib documents).
    Installed once per context by :func:`record_sni`; assigning another
    ``sni_callback`` afterwards replaces it, and ``c.tls.server_hostname``
    is then None on the server side.
    """

    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, ssl_object: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> Any:
        _sni.name = server_name
        if self.inner is None:
            return None
        return self.inner(ssl_object, server_name, context)


def record_sni(ctx: ssl.SSLContext) -> None:
    """Install a :class:`SNIRecorder` on the server context ``ctx`` (once; the user's callback is kept)."""
    current = ctx.sni_callback
    if not isinstance(current, SNIRecorder):
        ctx.sni_callback = SNIRecorder(current)


class TLSInfo:
    """What ``c.tls`` shows a handler about its connection's TLS session (a snapshot at handshake time).

    asyncio's ``transport.get_extra_info("ssl_object")``/``"peercert"``/``"cipher"``, as one object.
    """

    __slots__ = (
        "version",
        "cipher",
        "alpn_protocol",
        "server_hostname",
        "peer_certificate",
        "peer_certificate_der",
        "session_reused",
        "server_side",
    )

    def __init__(self, obj: ssl.SSLObject, server_side: bool, sni: str | None) -> None:
        #: The negotiated protocol: ``"TLSv1.3"``, ``"TLSv1.2"``.
        self.version: str | None = obj.version()
        #: ``(name, protocol, secret_bits)``, e.g. ``("TLS_AES_256_GCM_SHA384", "TLSv1.3", 256)``.
        self.cipher: tuple[str, str, int] | None = obj.cipher()
        #: The ALPN protocol both sides agreed on (``"http/1.1"``, ``"h2"``), or None
        #: (``SSLContext.set_alpn_protocols`` on both sides chooses it).
        self.alpn_protocol: str | None = obj.selected_alpn_protocol()
        #: SNI: on a server, the name the client asked for (None if it sent
        #: none); on a client, the name it sent and checked the certificate against.
        self.server_hostname: str | None = sni if server_side else obj.server_hostname
        #: The peer's certificate as ``SSLSocket.getpeercert()`` returns it: a
        #: dict once verified (a server's on a client, a client's with
        #: ``verify_mode`` CERT_REQUIRED/CERT_OPTIONAL on a server), else None.
        self.peer_certificate: dict[str, Any] | None = obj.getpeercert() or None
        #: The peer's certificate in DER form, verified or not; None if it sent none.
        self.peer_certificate_der: bytes | None = obj.getpeercert(binary_form=True)
        #: Whether the session was resumed (a TLS session ticket or ID was accepted).
        self.session_reused: bool = bool(obj.session_reused)
        #: True on the server side of the connection.
        self.server_side = server_side

    def __repr__(self) -> str:
        name = self.cipher[0] if self.cipher else None
        return (f"<TLSInfo {self.version} {name} alpn={self.alpn_protocol!r} "
                f"server_hostname={self.server_hostname!r}>")


class TLSSession:
    """One connection's TLS state machine over memory BIOs (asyncio: ``SSLProtocol``'s TLS half).

    Owned by its :class:`~reactor.connection.Conn`, which calls it on the
    loop thread only. States: handshaking → open → closed; ``close_notify``
    sent and received are tracked on the side. No method raises
    ``SSLWantReadError``/``SSLWantWriteError``: with memory BIOs "want read"
    only means "wait for the next read(2)" and is a return value here;
    every other ``ssl.SSLError`` is fatal for the connection (the session is
    then closed, and no ``close_notify`` is sent after it).

    The per-read path (:meth:`receive`, :meth:`decrypt_into`, :meth:`write`,
    :attr:`drain`) calls bound methods of the ``SSLObject`` and the BIOs
    taken once at creation: these run for every record, and each saved
    attribute lookup is a few percent of a small echo's CPU time.
    """

    __slots__ = ("_obj", "_in", "_out", "_feed", "_read", "_write", "_state", "_server_side", "_sni",
                 "_partial", "_error", "drain", "encrypt", "outgoing", "writable", "more", "info", "batching",
                 "notify_sent", "notify_received", "eof_error", "received", "early", "waiter", "handshake_due")

    def __init__(self, ctx: ssl.SSLContext, server_side: bool, server_hostname: str | None = None) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        obj = ctx.wrap_bio(
            self._in, self._out, server_side=server_side, server_hostname=None if server_side else server_hostname
        )
        self._obj: ssl.SSLObject | None = obj
        self._feed: Callable[..., Any] = self._in.write
        #: The outgoing BIO's ``read``: all the ciphertext waiting to be sent (b"" if none).
        self.drain: Callable[..., bytes] = self._out.read
        #: The outgoing BIO (its ``pending`` count), for the connection's inline write path.
        self.outgoing = self._out
        self._read: Callable[..., Any] = obj.read
        self._write: Callable[..., int] = obj.write
        #: ``SSLObject.write``, for the connection's inline write path (``Conn.write_raw``): only
        #: while :attr:`writable`. With memory BIOs it encrypts everything it is given
        #: (CPython does not set SSL_MODE_ENABLE_PARTIAL_WRITE) or raises.
        self.encrypt: Callable[..., int] = obj.write
        #: True while application data may be encrypted: the handshake is done, nothing failed.
        self.writable = False
        self._state = _HANDSHAKING
        self._server_side = server_side
        self._sni: str | None = None
        #: Whether more plaintext may be decrypted without a new read(2): ciphertext
        #: is left in the incoming BIO, or the last SSL_read filled the caller's
        #: view (OpenSSL may hold the rest of that record). The loop reads it to
        #: skip a call per read (see ``decrypt_into``).
        self.more = False
        # The last SSL_read stopped for want of input that had begun to arrive: part of
        # a record is held (OpenSSL moves it out of the BIO into its own buffer, so the
        # BIO's pending count cannot tell). Only for the note on a truncated record.
        self._partial = False
        # An error met while decrypting the records behind some plaintext (_fill):
        # raised once that plaintext has been handled.
        self._error: BaseException | None = None
        #: The ``c.tls`` view, set when the handshake completes.
        self.info: TLSInfo | None = None
        #: The loop is processing a read: encrypted answers wait in the
        #: outgoing BIO and leave in one write(2) at the end (``Conn.tls_flush``).
        self.batching = False
        self.notify_sent = False
        self.notify_received = False
        #: Why the peer's stream ended, for ``on_closed``: an ``ssl.SSLEOFError``
        #: when it closed TCP without close_notify.
        self.eof_error: BaseException | None = None
        #: Whether any ciphertext has arrived (a peer that connects and leaves at once is not worth a log line).
        self.received = False
        #: Plaintext written before the handshake completed (a client writing from a
        #: callback right after dialing), encrypted as soon as it does.
        self.early: list[bytes] = []
        #: Called once with None or the error when the handshake ends (``Client.dial`` waits on it).
        self.waiter: Callable[[BaseException | None], None] | None = None
        #: The loop-clock time the handshake must complete by (``Conn.tls_begin``), or None.
        self.handshake_due: float | None = None

    # --- state -----------------------------------------------------------------------------------------
    @property
    def handshaking(self) -> bool:
        """True while the handshake runs (False once complete, and once failed)."""
        return self._state == _HANDSHAKING

    @property
    def open(self) -> bool:
        """True from the end of the handshake until the session is released or fails."""
        return self._state == _OPEN

    @property
    def server_side(self) -> bool:
        """Which side of the handshake this session plays."""
        return self._server_side

    def pending_output(self) -> int:
        """Bytes of ciphertext in the outgoing BIO, not yet handed to the connection."""
        return self._out.pending

    def fail(self) -> None:
        """The session failed for good (an ``ssl.SSLError`` from OpenSSL): no more writes, no close_notify."""
        self._state = _CLOSED
        self.writable = False

    # --- input -----------------------------------------------------------------------------------------
    def receive(self, view: Any, n: int) -> int:
        """Ciphertext ``view[:n]`` from read(2) in (copied: the loop reuses its buffer), then handshake or decrypt.

        Starts a batch (see :attr:`batching`). Returns a plaintext count (the
        plaintext is at the start of ``view``), ``WANT_READ``, ``OPENED`` (the
        handshake has just completed) or ``CLOSE_NOTIFY``. The plaintext of
        every complete record the read brought is decrypted, one after the
        other (as long as ``view`` has room), so the codec sees what the read
        brought at once, as without TLS (uvloop joins them too).

        :raises ssl.SSLError: the handshake failed, or a record is corrupt.
        """
        self.batching = True
        if n:
            self._feed(view[:n])
            self.received = True
        state = self._state
        if state != _OPEN:
            if state == _HANDSHAKING:
                return OPENED if self.handshake() else WANT_READ
            return WANT_READ
        # decrypt_into, written out: this runs once per read(2).
        room = len(view)
        try:
            k: int = self._read(room, view)
        except _WantRead:
            self.more = False
            self._partial = n > 0
            return WANT_READ
        except _WantWrite:
            self.more = False
            return WANT_READ
        except BaseException:
            self.fail()
            raise
        if k:
            if k == room:
                self.more = True
            elif self._in.pending:
                return self._fill(view, k, room)  # more records came with this read
            else:
                self.more = False  # the usual case: one record, all decrypted, no exception raised
            return k
        self.notify_received = True
        self.more = False
        return CLOSE_NOTIFY

    def _fill(self, view: Any, total: int, room: int) -> int:
        """Decrypt the following records of a read behind the first ``total`` bytes of plaintext in ``view``.

        Stops at an incomplete record, a full ``view`` (``more`` stays True),
        ``close_notify`` or an error; the last two are reported by the next
        :meth:`decrypt_into`, after this plaintext has been handled.
        """
        read = self._read
        while total < room:
            if not self._in.pending:
                self.more = False
                return total
            try:
                k: int = read(room - total, view[total:])
            except (_WantRead, _WantWrite):
                self.more = False
                self._partial = True
                return total
            except _SSLError as e:
                # Raised by the next decrypt_into, once the plaintext before it is handled
                # (answers to it are dropped: OpenSSL writes nothing after a fatal error;
                # its alert, already in the outgoing BIO, still goes out).
                self._error = e
                self.fail()
                self.more = True
                return total
            if not k:
                self.more = True  # close_notify: the next SSL_read returns 0 again
                return total
            total += k
        self.more = True
        return total

    def handshake(self) -> bool:
        """Run the handshake as far as the input allows; True once complete.

        Its output (a ClientHello, a ServerHello…, TLS 1.3 session tickets
        once done) waits in the outgoing BIO for the connection to send.

        :raises ssl.SSLError: the handshake failed (a certificate that does
            not verify, no shared protocol or cipher, not TLS at all...).
        """
        obj = self._obj
        if obj is None:
            raise ssl.SSLError("the TLS session is closed")
        _sni.name = None
        try:
            obj.do_handshake()
        except (_WantRead, _WantWrite):
            return False
        except BaseException:
            self.fail()
            raise
        finally:
            name = _sni.name
            if name is not None:
                self._sni = name
                _sni.name = None
        self._state = _OPEN
        self.writable = True
        self.more = True  # application data may have come with the last handshake flight
        self.info = TLSInfo(obj, self._server_side, self._sni)
        return True

    def decrypt_into(self, view: Any) -> int:
        """Plaintext into ``view``: a byte count > 0, ``WANT_READ`` or ``CLOSE_NOTIFY``.

        Every complete record waiting, as far as ``view`` has room (see
        :meth:`receive`). The caller calls again until ``WANT_READ``. No exception is raised for the
        common end of input: when the incoming BIO is empty and the last
        read did not fill ``view``, nothing can be left, so OpenSSL is not
        asked (asking would raise, and build, an ``SSLWantReadError``: about
        a microsecond per read). OpenSSL reads no further ahead than the
        record it decrypts (``read_ahead`` is off), so what it has not
        consumed is still in the BIO.

        :raises ssl.SSLError: a corrupt record (bad MAC, garbage, a
            truncated record at EOF: ``ssl.SSLEOFError``), an alert from the peer.
        """
        err = self._error
        if err is not None:
            self._error = None
            self.fail()
            raise err
        pending = self._in.pending
        if (not pending and not self.more) or self._state != _OPEN:
            self.more = False
            return WANT_READ
        room = len(view)
        try:
            # With a buffer, SSLObject.read returns the count.
            n: int = self._read(room, view)
        except _WantRead:
            self.more = False
            self._partial = pending > 0
            return WANT_READ
        except _WantWrite:
            self.more = False
            return WANT_READ  # a renegotiation's output waits in the outgoing BIO; flushed by the caller
        except BaseException:
            self.fail()
            raise
        if n:
            self._partial = False
            if n == room:
                self.more = True
            elif self._in.pending:
                return self._fill(view, n, room)
            else:
                self.more = False
            return n
        # SSL_read returned 0: close_notify (SSL_ERROR_ZERO_RETURN), the orderly end of the peer's stream.
        self.notify_received = True
        self.more = False
        return CLOSE_NOTIFY

    def end_of_input(self) -> BaseException | None:
        """read(2) returned 0 on an open session: why the peer's stream ended, for ``on_closed``.

        None after ``close_notify`` (an orderly end). Otherwise the peer
        closed TCP without it: ``ssl.SSLEOFError``, noted as a ragged EOF
        (nothing lost that we can tell, but a truncation cannot be told
        apart, which is why TLS has close_notify) or as a truncated record
        (part of a record had arrived). Kept in ``eof_error`` too.
        """
        obj = self._obj
        if obj is None or self.notify_received:
            return None
        truncated = self._in.pending > 0 or self._partial
        self._in.write_eof()
        err: BaseException
        try:
            data = obj.read(1)
        except _SSLError as e:
            err = e
        else:
            if not data:  # close_notify after all
                self.notify_received = True
                return None
            err = ssl.SSLEOFError(ssl.SSL_ERROR_EOF, "EOF occurred in violation of protocol")
        self.fail()  # OpenSSL will not send close_notify after this
        if hasattr(err, "add_note"):
            err.add_note(
                "the peer closed TCP in the middle of a TLS record: a truncated record" if truncated else
                "the peer closed TCP without sending close_notify (a ragged EOF; many clients do)"
            )
        self.eof_error = err
        return err

    # --- output ----------------------------------------------------------------------------------------
    def write(self, data: Any) -> bytes:
        """Encrypt ``data`` (callers slice large writes by ``WRITE_SLICE``); the ciphertext to send now.

        That is everything in the outgoing BIO, or b"" while batching with
        less than ``FLUSH_THRESHOLD`` in it. Before the handshake completes
        the plaintext is kept in :attr:`early`; after the session closed or
        failed it is dropped (like any write to a closed connection).

        :raises ssl.SSLError: encryption failed (the session is then closed).
        """
        state = self._state
        if state != _OPEN:
            if state == _HANDSHAKING:
                self.early.append(bytes(data))
            return b""
        try:
            n = self._write(data)
            if n < len(data):  # SSL_write takes everything with memory BIOs; a partial write is retried anyway
                view = memoryview(data)[n:]
                while view:
                    view = view[self._write(view):]
        except BaseException:
            self.fail()
            raise
        if self.batching and self._out.pending < FLUSH_THRESHOLD:
            return b""
        return self.drain()

    def take_output(self) -> bytes:
        """All the ciphertext waiting in the outgoing BIO (b"" if none)."""
        return self.drain()

    def close_notify(self) -> bool:
        """Queue our ``close_notify`` alert in the outgoing BIO; True if one was queued.

        Only once, only on an open session (not after a failure: OpenSSL
        refuses to shut down a session that saw a fatal error, and a peer
        that never finished the handshake is owed nothing).
        """
        obj = self._obj
        if obj is None or self._state != _OPEN or self.notify_sent:
            return False
        self.notify_sent = True
        try:
            obj.unwrap()
        except (_WantRead, _WantWrite):
            pass  # our alert is out; the peer's reply would complete the shutdown (not waited for)
        except _SSLError:
            return False
        return self._out.pending > 0

    def release(self) -> None:
        """Drop the ``SSLObject`` and both BIOs (the connection is closed); ``info`` stays readable."""
        self._obj = None
        self._in = self._out = _RELEASED
        self._feed = self.drain = self._read = self._write = self.encrypt = _released
        self.outgoing = _RELEASED
        self.more = self.writable = False
        self._state = _CLOSED
        self.early = []
        self.waiter = None


def _released(*args: Any) -> Any:
    """What a released session's SSLObject and BIO methods are: nothing to read, nothing written."""
    return b""


_RELEASED = ssl.MemoryBIO()  # what a released session's BIO fields point at: empty, never written
_RELEASED.write_eof()
