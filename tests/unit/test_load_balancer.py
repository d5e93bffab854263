"""reactor.load_balancer: how the main reactor picks a sub-reactor per connection.

This is pure logic, so the event loops are stand-ins with an ``idx`` and a
``count_connections()``.
"""

from __future__ import annotations

import zlib

import pytest

from reactor.load_balancer import (
    LeastConnectionsLoadBalancer,
    LoadBalancer,
    LoadBalancing,
    RoundRobinLoadBalancer,
    SourceAddrHashLoadBalancer,
    address_string,
    new_load_balancer,
)


class FakeLoop:
    def __init__(self, conns: int = 0) -> None:
        self.idx = -1
        self.conns = conns

    def count_connections(self) -> int:
        return self.conns


def balancer_with(lb: LoadBalancer, n: int) -> list[FakeLoop]:
    loops = [FakeLoop() for _ in range(n)]
    for el in loops:
        lb.register(el)
    return loops


def test_register_assigns_indexes_in_order() -> None:
    """register() numbers the loops 0..n-1; len/iter/iterate expose them in that order."""
    lb = RoundRobinLoadBalancer()
    loops = balancer_with(lb, 4)
    assert [el.idx for el in loops] == [0, 1, 2, 3]
    assert len(lb) == 4
    assert list(lb) == loops
    seen: list[tuple[int, FakeLoop]] = []

    def f(i: int, el: FakeLoop) -> bool:
        seen.append((i, el))
        return True

    lb.iterate(f)
    assert seen == list(enumerate(loops))


def test_iterate_stops_when_callback_returns_false() -> None:
    """iterate() stops at the first callback that returns False."""
    lb = RoundRobinLoadBalancer()
    balancer_with(lb, 5)
    seen: list[int] = []

    def f(i: int, el: FakeLoop) -> bool:
        seen.append(i)
        return i < 2

    lb.iterate(f)
    assert seen == [0, 1, 2]


def test_round_robin_cycles_in_order() -> None:
    """Round robin hands out loops 0, 1, 2, 0, 1, 2, ... whatever the address."""
    lb = RoundRobinLoadBalancer()
    loops = balancer_with(lb, 3)
    picked = [lb.next(("127.0.0.1", 1000 + i)).idx for i in range(7)]
    assert picked == [0, 1, 2, 0, 1, 2, 0]
    assert lb.next(None) is loops[1]


def test_round_robin_single_loop() -> None:
    """With one loop, round robin always returns it."""
    lb = RoundRobinLoadBalancer()
    (only,) = balancer_with(lb, 1)
    assert all(lb.next(None) is only for _ in range(5))


def test_least_connections_picks_smallest_count() -> None:
    """Least connections returns the loop whose count_connections() is smallest right now."""
    lb = LeastConnectionsLoadBalancer()
    loops = balancer_with(lb, 4)
    for el, n in zip(loops, (5, 3, 7, 4)):
        el.conns = n
    assert lb.next(None) is loops[1]
    loops[3].conns = 0
    assert lb.next(("10.0.0.1", 1)) is loops[3]
    loops[0].conns = -1  # counts are read on every call, not cached
    assert lb.next(None) is loops[0]


def test_least_connections_tie_goes_to_first() -> None:
    """On a tie the lowest-index loop wins (gnet's linear scan keeps the first minimum)."""
    lb = LeastConnectionsLoadBalancer()
    loops = balancer_with(lb, 3)
    for el in loops:
        el.conns = 2
    assert lb.next(None) is loops[0]
    loops[0].conns = 3
    assert lb.next(None) is loops[1]


@pytest.mark.parametrize(
    ("addr", "text"),
    [
        (("127.0.0.1", 5000), "127.0.0.1:5000"),
        (("::1", 5000, 0, 0), "[::1]:5000"),
        (("fe80::1", 80, 0, 2), "[fe80::1]:80"),
        ("/tmp/reactor.sock", "/tmp/reactor.sock"),
        (b"\0abstract", "@abstract"),
        ("", ""),
        (None, ""),
    ],
)
def test_address_string_shapes(addr: object, text: str) -> None:
    """address_string prints addresses as Go's net.Addr.String() does."""
    assert address_string(addr) == text  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "addr",
    [("127.0.0.1", 5000), ("::1", 5000, 0, 0), "/tmp/reactor.sock", ("192.168.1.20", 61234)],
)
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_source_addr_hash_is_crc32_of_address_string(addr: object, n: int) -> None:
    """Source-address hashing picks loop crc32(address string) % n, the same every time."""
    lb = SourceAddrHashLoadBalancer()
    loops = balancer_with(lb, n)
    expected = zlib.crc32(address_string(addr).encode()) % n  # type: ignore[arg-type]
    assert lb.next(addr) is loops[expected]  # type: ignore[arg-type]
    assert lb.next(addr) is loops[expected]  # type: ignore[arg-type]


def test_source_addr_hash_known_values() -> None:
    """The hashed strings are exactly "ip:port", "[ip6]:port" and the unix path."""
    lb = SourceAddrHashLoadBalancer()
    balancer_with(lb, 1000)
    assert lb.next(("127.0.0.1", 5000)).idx == zlib.crc32(b"127.0.0.1:5000") % 1000
    assert lb.next(("::1", 5000, 0, 0)).idx == zlib.crc32(b"[::1]:5000") % 1000
    assert lb.next("/run/x.sock").idx == zlib.crc32(b"/run/x.sock") % 1000


def test_source_addr_hash_spreads_ports_over_all_loops() -> None:
    """Many distinct source ports from one host land on every loop, roughly evenly."""
    lb = SourceAddrHashLoadBalancer()
    balancer_with(lb, 4)
    counts = [0] * 4
    for port in range(40000, 42000):
        counts[lb.next(("10.1.2.3", port)).idx] += 1
    assert sum(counts) == 2000
    assert min(counts) > 300, counts


@pytest.mark.parametrize(
    ("strategy", "cls"),
    [
        (LoadBalancing.ROUND_ROBIN, RoundRobinLoadBalancer),
        (LoadBalancing.LEAST_CONNECTIONS, LeastConnectionsLoadBalancer),
        (LoadBalancing.SOURCE_ADDR_HASH, SourceAddrHashLoadBalancer),
        (0, RoundRobinLoadBalancer),
        (2, SourceAddrHashLoadBalancer),
    ],
)
def test_new_load_balancer(strategy: LoadBalancing, cls: type) -> None:
    """new_load_balancer returns a fresh, empty balancer of the right kind for each strategy."""
    lb = new_load_balancer(strategy)
    assert type(lb) is cls
    assert len(lb) == 0
    assert new_load_balancer(strategy) is not lb


def test_new_load_balancer_unknown_strategy() -> None:
    """An unknown strategy value raises ValueError."""
    with pytest.raises(ValueError, match="strategy"):
        new_load_balancer(7)  # type: ignore[arg-type]


def test_load_balancing_values_match_gnet() -> None:
    """The enum values are gnet's constants (RoundRobin 0, LeastConnections 1, SourceAddrHash 2)."""
    assert [int(v) for v in LoadBalancing] == [0, 1, 2]
    assert LoadBalancing(1) is LoadBalancing.LEAST_CONNECTIONS


def test_base_balancer_next_is_abstract() -> None:
    """The base class has no strategy of its own."""
    lb: LoadBalancer[FakeLoop] = LoadBalancer()
    balancer_with(lb, 1)
    with pytest.raises(NotImplementedError):
        lb.next(None)
