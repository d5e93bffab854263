"""A tiny client to try the tutorial's servers with: nc that never half-closes.

    python docs/examples/talk.py PORT [MESSAGE ...] [--after S] [--times N]

Connects to 127.0.0.1:PORT, waits --after seconds, sends the messages (each
--times times, all in one send: a pipeline), and prints what the server
sends until the server closes the connection or stays quiet for half a
second. Messages understand backslash escapes: 'hello\\n', '\\r\\n',
'\\x00\\x00\\x00\\x05'. Bytes that would not show on a terminal are printed
as \\xNN.

Unlike `printf ... | nc`, it never shuts down its sending side when it has
nothing more to send: a server reads that as end of input (read returns 0)
and may close before a slow answer is ready (tutorial section 4).
"""

import argparse
import socket
import sys
import time


def printable(data):
    text = data.decode("latin-1")
    return "".join(ch if ch in "\r\n" or " " <= ch <= "~" else f"\\x{ord(ch):02x}" for ch in text)


def talk(port, messages, after=0.0, times=1, quiet=0.5, host="127.0.0.1", out=sys.stdout):
    payload = b"".join(m.encode("latin-1").decode("unicode_escape").encode("latin-1") for m in messages) * times
    shown = ""
    with socket.create_connection((host, port), timeout=5) as s:
        send_at = time.monotonic() + after
        sent = not payload
        last = time.monotonic()
        while True:
            now = time.monotonic()
            if not sent and now >= send_at:
                s.sendall(payload)
                sent, last = True, now
            wait = send_at - now if not sent else last + quiet - now
            if sent and wait <= 0:
                break  # quiet for long enough: done
            s.settimeout(max(wait, 0.001))
            try:
                data = s.recv(65536)
            except TimeoutError:
                continue
            if not data:
                break  # the server closed the connection
            last = time.monotonic()
            shown += printable(data)
            out.write(printable(data))
            out.flush()
    if shown and not shown.endswith("\n"):
        out.write("\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description="Send MESSAGEs to 127.0.0.1:PORT and print the answers.")
    parser.add_argument("port", type=int)
    parser.add_argument("messages", nargs="*", metavar="MESSAGE")
    parser.add_argument("--after", type=float, default=0.0, help="seconds to wait before sending")
    parser.add_argument("--times", type=int, default=1, help="send the messages this many times, in one go")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_intermixed_args(argv)  # options may come after the messages
    talk(args.port, args.messages, args.after, args.times, host=args.host)


if __name__ == "__main__":
    main()
