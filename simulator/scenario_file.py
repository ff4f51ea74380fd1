"""Scenario files: a scripted world (behaviours and region outages) frozen into YAML/JSON.

A file holds the control API's PUT bodies unchanged, so a scenario can be tried
interactively with `simulator.ctl` and then saved for a demo (`python -m simulator
--scenarios FILE`) or a test, without translating it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from simulator.scenario import Behaviour, RegionOutage
from simulator.scenario_book import ScenarioBook, ScenarioKey
from simulator.validation import ScenarioError


@dataclass(frozen=True, slots=True)
class ScenarioFile:
    """A scenario file's content: behaviours by (model, region) and region outages."""

    scenarios: dict[ScenarioKey, Behaviour]
    outages: dict[str, RegionOutage]

    def apply(self, book: ScenarioBook) -> None:
        for (model, region), behaviour in self.scenarios.items():
            book.set(model, behaviour, region)
        for region, outage in self.outages.items():
            book.set_region_down(region, outage)


def load_scenario_file(path: str | Path) -> ScenarioFile:
    """Read a YAML/JSON scenario file.

    Forms: a bare `{model: behaviour}`, or `{scenarios: {model: behaviour},
    region_scenarios: {region: {model: behaviour}}, regions: {region: {status, message}}}`.
    Behaviours are the control API's PUT bodies, so a scenario can be tried
    interactively and then frozen into a file unchanged; `regions` lists regions that
    start down (an outage demo).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml  # type: ignore[import-untyped,unused-ignore]  # only needed for YAML files

        data = yaml.safe_load(text) or {}
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{path}: expected a mapping of model name to behaviour")
    sectioned = {"scenarios", "region_scenarios", "regions"} & set(data)
    by_region: dict[str | None, Any] = (
        {None: data.get("scenarios") or {}, **(data.get("region_scenarios") or {})}
        if sectioned
        else {None: data}
    )
    regions = (data.get("regions") or {}) if sectioned else {}
    return ScenarioFile(_behaviours(path, by_region), _outages(path, regions))


def _behaviours(path: Path, by_region: Mapping[str | None, Any]) -> dict[ScenarioKey, Behaviour]:
    scenarios: dict[ScenarioKey, Behaviour] = {}
    for region, models in by_region.items():
        if not isinstance(models, Mapping):
            raise ScenarioError(f"{path}: expected a mapping of model name to behaviour")
        for model, behaviour in models.items():
            try:
                scenarios[(str(model), region)] = Behaviour.from_mapping(behaviour or {})
            except ScenarioError as exc:
                where = f"model {model!r}" + (f" in region {region}" if region else "")
                raise ScenarioError(f"{path}: {where}: {exc}") from None
    return scenarios


def _outages(path: Path, regions: Any) -> dict[str, RegionOutage]:
    if not isinstance(regions, Mapping):
        raise ScenarioError(f"{path}: regions must map region to {{status, message}}")
    outages = {}
    for region, outage in regions.items():
        try:
            outages[str(region)] = RegionOutage.from_mapping(outage or {})
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: region {region!r}: {exc}") from None
    return outages
