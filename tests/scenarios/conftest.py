"""The ``clients`` and ``jobs`` fixtures of the scenario files (tests/scenarios/scenario_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from scenario_support import Clients, Jobs


@pytest.fixture
def clients() -> Iterator[Clients]:
    c = Clients()
    yield c
    c.close_all()


@pytest.fixture
def jobs() -> Iterator[Jobs]:
    j = Jobs()
    yield j
    j.join_all()
