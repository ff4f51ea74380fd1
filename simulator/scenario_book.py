"""The scenario registry: which behaviour applies to a call, and what the call must do.

Behaviours are keyed by model and, optionally, region, plus region-wide outages. The
book is the only stateful part of scripting: one-shot `failures` are counted down here,
one per call, so "fail twice with 429, then succeed" holds however calls interleave.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from simulator.scenario import Behaviour, RegionOutage

WILDCARD_KEY = "*"
"""Scenario key that applies to every model without a scenario of its own."""

ScenarioKey = tuple[str, str | None]
"""(model, region); region None means "in every region without a scenario of its own"."""


@dataclass(frozen=True, slots=True)
class ScriptedError:
    """The error a call must answer with; the vendor module renders it in its own shape."""

    status: int
    message: str | None = None
    retry_after_s: float | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The decision for one call: its behaviour and, if it must fail, how."""

    behaviour: Behaviour
    error: ScriptedError | None = None


@dataclass(slots=True)
class _Scenario:
    behaviour: Behaviour
    remaining: list[int]  # per failure entry, how many calls it still fails


def display_key(key: ScenarioKey) -> str:
    """How the control API names a scenario: `model`, or `model@region` when region-scoped."""
    model, region = key
    return model if region is None else f"{model}@{region}"


class ScenarioBook:
    """Scripted behaviours keyed by model and, optionally, region; plus region outages.

    Lookup for a call to `model` in `region` takes the first that exists of
    (model, region), (model, any region), (*, region), (*, any region), the default.
    Vendors without regions pass region None.

    `plan()` is synchronous and contains no await, so on the single event loop each call
    consumes exactly one pending failure even when many requests arrive at once.
    """

    def __init__(self) -> None:
        self._scenarios: dict[ScenarioKey, _Scenario] = {}
        self._outages: dict[str, RegionOutage] = {}
        self._default = Behaviour()

    def set(self, model: str, behaviour: Behaviour, region: str | None = None) -> None:
        """Replace the behaviour of `model` (in `region`) and restart its failure script."""
        remaining = [f.count for f in behaviour.failures]
        self._scenarios[(model, region)] = _Scenario(behaviour, remaining)

    def remove(self, model: str, region: str | None = None) -> bool:
        return self._scenarios.pop((model, region), None) is not None

    def clear(self) -> None:
        """Forget every scenario and outage."""
        self._scenarios.clear()
        self._outages.clear()

    def names(self) -> list[str]:
        """Models that have a scripted behaviour (including the wildcard, if set)."""
        return list(dict.fromkeys(model for model, _ in self._scenarios))

    def set_region_down(self, region: str, outage: RegionOutage) -> None:
        self._outages[region] = outage

    def set_region_up(self, region: str) -> bool:
        return self._outages.pop(region, None) is not None

    def outages(self) -> dict[str, RegionOutage]:
        return dict(self._outages)

    def _find(self, model: str, region: str | None) -> _Scenario | None:
        candidates = ((model, region), (model, None), (WILDCARD_KEY, region), (WILDCARD_KEY, None))
        for key in candidates:
            scenario = self._scenarios.get(key)
            if scenario is not None:
                return scenario
        return None

    def behaviour(self, model: str, region: str | None = None) -> Behaviour:
        """The behaviour that applies to `model` in `region`."""
        scenario = self._find(model, region)
        return self._default if scenario is None else scenario.behaviour

    def plan(self, model: str, region: str | None = None) -> Plan:
        """Decide how the next call behaves, consuming a one-shot failure if any."""
        scenario = self._find(model, region)
        behaviour = self._default if scenario is None else scenario.behaviour
        outage = None if region is None else self._outages.get(region)
        if outage is not None:
            message = outage.message or f"Region {region} is unavailable (simulated outage)."
            return Plan(behaviour, ScriptedError(outage.status, message))
        if scenario is None:
            return Plan(behaviour)
        if behaviour.not_found:
            return Plan(behaviour, ScriptedError(404))
        for i, left in enumerate(scenario.remaining):
            if left > 0:
                scenario.remaining[i] = left - 1
                f = behaviour.failures[i]
                return Plan(behaviour, ScriptedError(f.status, f.message, f.retry_after_s, f.code))
        if behaviour.always_status is not None:
            return Plan(behaviour, ScriptedError(behaviour.always_status))
        return Plan(behaviour)

    def snapshot(self) -> dict[str, Any]:
        """Behaviours (keyed `model` or `model@region`) with their pending failure counts."""
        return {
            display_key(key): {**s.behaviour.to_dict(), "failures_remaining": sum(s.remaining)}
            for key, s in self._scenarios.items()
        }

    def outages_snapshot(self) -> dict[str, Any]:
        return {region: asdict(o) for region, o in self._outages.items()}
