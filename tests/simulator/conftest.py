"""Fixtures shared by the simulator's specifications."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulator.testing import SimulatorProcess


@pytest.fixture(scope="module")
def sim() -> Iterator[SimulatorProcess]:
    """A simulator process per test module, so no module sees another's scenarios."""
    with SimulatorProcess() as process:
        yield process
