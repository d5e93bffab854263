"""Facts about this host's network that several test files skip on."""

from __future__ import annotations

import functools
import socket


@functools.cache
def has_ipv6_loopback() -> bool:
    """True if ``::1`` can be bound (containers and some CI hosts have IPv6 disabled)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False
