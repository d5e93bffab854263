"""The integrity flood: N clients each send SIZE seeded-random bytes and verify the echo.

Run as a separate process by test_rel_integrity.py (so the clients do not
share the server's GIL)::

    python flood_client.py HOST PORT CLIENTS SIZE [RCVBUF SNDBUF]

One thread multiplexes all clients with ``selectors`` over non-blocking
sockets with small buffers. Client ``i`` sends ``random.Random(i)`` bytes
and checks every byte it gets back, in order, against a second generator
with the same seed, chunk by chunk as it arrives; nothing holds more than
64 KiB of expected data. Prints one JSON line with the result; exits 1 with
a message naming the client and offset on the first mismatch, EOF or stall.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import sys
import time

# reliability_support imports netsupport, from tests/ (on sys.path under pytest, not in this script).
sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reliability_support import PRNGStream  # noqa: E402

STALL = 20.0  # seconds without any progress on any client: fail instead of hanging


def run(host: str, port: int, clients: int, size: int, rcvbuf: int, sndbuf: int) -> dict:
    sel = selectors.DefaultSelector()
    state = []
    for i in range(clients):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        s.settimeout(STALL)
        s.connect((host, port))
        s.setblocking(False)
        st = {"i": i, "tx": PRNGStream(i, size), "rx": PRNGStream(i, size), "sent": 0, "got": 0,
              "sending": True, "sock": s}
        state.append(st)
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)
    remaining = clients
    start = time.monotonic()
    partial_sends = 0
    try:
        while remaining:
            events = sel.select(STALL)
            if not events:
                stuck = {st["i"]: (st["sent"], st["got"]) for st in state if st["got"] < size}
                raise SystemExit(f"no progress for {STALL:g} s; (sent, received) per unfinished client: {stuck}")
            for key, ev in events:
                st = key.data
                s = st["sock"]
                if ev & selectors.EVENT_WRITE and st["sending"]:
                    chunk = st["tx"].peek(BLOCK_SEND)
                    if not chunk:
                        st["sending"] = False
                        sel.modify(s, selectors.EVENT_READ, st)
                    else:
                        try:
                            k = s.send(chunk)
                        except BlockingIOError:
                            k = 0
                        if k < len(chunk):
                            partial_sends += 1
                        st["tx"].advance(k)
                        st["sent"] += k
                if ev & selectors.EVENT_READ:
                    try:
                        data = s.recv(1 << 18)
                    except BlockingIOError:
                        continue
                    if not data:
                        raise SystemExit(f"client {st['i']}: EOF after {st['got']} of {size} bytes")
                    view = memoryview(data)
                    while view:
                        expected = st["rx"].peek(len(view))
                        k = len(expected)
                        if not k:
                            raise SystemExit(f"client {st['i']}: {len(view)} bytes more than were sent")
                        if view[:k] != expected:
                            at = next(j for j in range(k) if view[j] != expected[j])
                            raise SystemExit(
                                f"client {st['i']}: byte {st['got'] + at} differs "
                                f"(got {bytes(view[at:at + 8]).hex()}, expected {bytes(expected[at:at + 8]).hex()})"
                            )
                        st["rx"].advance(k)
                        st["got"] += k
                        view = view[k:]
                    if st["got"] == size:
                        sel.unregister(s)
                        s.close()
                        remaining -= 1
    finally:
        for st in state:
            st["sock"].close()
        sel.close()
    return {
        "elapsed": time.monotonic() - start,
        "clients": clients,
        "bytes_each_way": clients * size,
        "partial_sends": partial_sends,
    }


BLOCK_SEND = 64 * 1024

if __name__ == "__main__":
    argv = sys.argv[1:]
    host, port, n, size = argv[0], int(argv[1]), int(argv[2]), int(argv[3])
    rcv = int(argv[4]) if len(argv) > 4 else 16384
    snd = int(argv[5]) if len(argv) > 5 else 16384
    print(json.dumps(run(host, port, n, size, rcv, snd)), flush=True)
