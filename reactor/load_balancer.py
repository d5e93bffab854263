"""Pick the sub-reactor for each accepted connection.

gnet counterpart: ``load_balancer.go`` (v1.6.7). Only used in main-reactor
mode: with ``reuse_port`` the kernel spreads connections over the loops' own
listening sockets, and the balancer is just the list of loops.
"""

from __future__ import annotations

import enum
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from .internal.unix import Address

__all__ = [
    "LoadBalancer",
    "LoadBalancing",
    "LeastConnectionsLoadBalancer",
    "RoundRobinLoadBalancer",
    "SourceAddrHashLoadBalancer",
    "address_string",
    "new_load_balancer",
]


class LoadBalancing(enum.IntEnum):
    """The strategy (gnet: ``LoadBalancing``)."""

    #: Hand connections to the loops in turn.
    ROUND_ROBIN = 0
    #: Hand each connection to the loop with the fewest connections right now.
    LEAST_CONNECTIONS = 1
    #: Hash the peer's address string (CRC-32), so a source always lands on the same loop.
    SOURCE_ADDR_HASH = 2


class _Loop(Protocol):
    idx: int

    def count_connections(self) -> int: ...


L = TypeVar("L", bound=_Loop)


def address_string(addr: Address | None) -> str:
    """The peer address as Go's ``net.Addr.String()`` prints it ("ip:port", "[ip6]:port", path)."""
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if len(addr) == 4 else f"{host}:{port}"
    if isinstance(addr, bytes):
        return "@" + addr[1:].decode("utf-8", "backslashreplace")
    return addr or ""


class LoadBalancer(Generic[L]):
    """The common part: the loop list (gnet: ``loadBalancer`` interface + ``register``/``iterate``/``len``)."""

    def __init__(self) -> None:
        self.event_loops: list[L] = []

    def register(self, el: L) -> None:
        el.idx = len(self.event_loops)
        self.event_loops.append(el)

    def next(self, remote_addr: Address | None) -> L:
        raise NotImplementedError

    def iterate(self, f: Callable[[int, L], bool]) -> None:
        for i, el in enumerate(self.event_loops):
            if not f(i, el):
                break

    def __iter__(self) -> Iterator[L]:
        return iter(self.event_loops)

    def __len__(self) -> int:
        return len(self.event_loops)


class RoundRobinLoadBalancer(LoadBalancer[L]):
    """gnet: ``roundRobinLoadBalancer``. ``next`` runs on the main reactor thread only."""

    def __init__(self) -> None:
        super().__init__()
        self._next_index = 0

    def next(self, remote_addr: Address | None) -> L:
        el = self.event_loops[self._next_index]
        self._next_index += 1
        if self._next_index >= len(self.event_loops):
            self._next_index = 0
        return el


class LeastConnectionsLoadBalancer(LoadBalancer[L]):
    """gnet: ``leastConnectionsLoadBalancer``: scan the loops' connection counters."""

    def next(self, remote_addr: Address | None) -> L:
        return min(self.event_loops, key=lambda el: el.count_connections())


class SourceAddrHashLoadBalancer(LoadBalancer[L]):
    """gnet: ``sourceAddrHashLoadBalancer``: CRC-32 (IEEE) of the address string, modulo the loop count."""

    def next(self, remote_addr: Address | None) -> L:
        code = zlib.crc32(address_string(remote_addr).encode())
        return self.event_loops[code % len(self.event_loops)]


def new_load_balancer(lb: LoadBalancing) -> LoadBalancer[L]:
    """The balancer for a strategy (gnet: the switch in ``serve``)."""
    if lb == LoadBalancing.ROUND_ROBIN:
        return RoundRobinLoadBalancer()
    if lb == LoadBalancing.LEAST_CONNECTIONS:
        return LeastConnectionsLoadBalancer()
    if lb == LoadBalancing.SOURCE_ADDR_HASH:
        return SourceAddrHashLoadBalancer()
    raise ValueError(f"unknown load balancing strategy {lb!r}")
