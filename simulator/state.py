"""The one mutable object of a running simulator, created by the app, never a global.

Every vendor protocol gets the same instance, so a scenario scripted through the
control API applies whichever SDK calls, and the counters see every call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from simulator.scenario_book import ScenarioBook
from simulator.stats import SimStats


@dataclass(slots=True)
class SimulatorState:
    """Everything mutable in a running simulator; owned by the app, passed to each protocol."""

    scenarios: ScenarioBook = field(default_factory=ScenarioBook)
    stats: SimStats = field(default_factory=SimStats)
