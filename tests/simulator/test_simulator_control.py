"""Per-model and per-region scripting, region outages, scenario files and the control CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simulator import ctl
from simulator.scenario import Behaviour, RegionOutage, ScenarioError
from simulator.scenario_book import WILDCARD_KEY, ScenarioBook
from simulator.scenario_file import load_scenario_file
from simulator.testing import SimulatorProcess

# --------------------------------------------------------------------------- scenario book


def test_lookup_prefers_model_and_region_then_model_then_wildcards() -> None:
    book = ScenarioBook()
    book.set(WILDCARD_KEY, Behaviour(reply="any model, any region"))
    book.set(WILDCARD_KEY, Behaviour(reply="any model in ap-south-1"), "ap-south-1")
    book.set("m", Behaviour(reply="m anywhere"))
    book.set("m", Behaviour(reply="m in us-east-1"), "us-east-1")

    assert book.behaviour("m", "us-east-1").reply == "m in us-east-1"
    assert book.behaviour("m", "eu-west-1").reply == "m anywhere"
    assert book.behaviour("m").reply == "m anywhere"
    assert book.behaviour("other", "ap-south-1").reply == "any model in ap-south-1"
    assert book.behaviour("other").reply == "any model, any region"


def test_region_outage_wins_and_does_not_consume_scripted_failures() -> None:
    book = ScenarioBook()
    book.set("m", Behaviour.from_mapping({"failures": [{"status": 429}]}))
    book.set_region_down("us-east-1", RegionOutage(status=503))

    down = book.plan("m", "us-east-1")
    elsewhere = [book.plan("m", "us-west-2"), book.plan("m", "us-west-2")]

    assert down.error is not None and down.error.status == 503
    assert [p.error.status if p.error else None for p in elsewhere] == [429, None]
    assert book.plan("m").error is None  # vendors without regions never see outages


def test_failure_sequences_are_counted_per_region() -> None:
    book = ScenarioBook()
    book.set("m", Behaviour.from_mapping({"failures": [{"status": 503, "count": 1}]}), "a")
    book.set("m", Behaviour.from_mapping({"failures": [{"status": 503, "count": 1}]}), "b")

    statuses = [book.plan("m", r).error for r in ("a", "a", "b", "b")]

    assert [e.status if e else None for e in statuses] == [503, None, 503, None]


def test_new_behaviour_fields_are_validated() -> None:
    with pytest.raises(ScenarioError, match="content_filter"):
        Behaviour.from_mapping({"content_filter": "everything"})
    with pytest.raises(ScenarioError, match="drop_error_status"):
        Behaviour.from_mapping({"drop_error_status": 200})
    with pytest.raises(ScenarioError, match="region"):
        RegionOutage.from_mapping({"status": 503, "colour": "red"})


def test_scenario_file_with_regions(tmp_path: Path) -> None:
    path = tmp_path / "outage.json"
    path.write_text(
        json.dumps(
            {
                "scenarios": {"gemini-2.5-pro": {"always_status": 503}},
                "region_scenarios": {"ap-south-1": {"deepseek.r1-v1:0": {"timeout": True}}},
                "regions": {"us-east-1": {"status": 500}},
            }
        )
    )
    book = ScenarioBook()

    load_scenario_file(path).apply(book)

    assert book.behaviour("gemini-2.5-pro").always_status == 503
    assert book.behaviour("deepseek.r1-v1:0", "ap-south-1").timeout
    assert not book.behaviour("deepseek.r1-v1:0", "eu-west-1").timeout
    assert book.outages() == {"us-east-1": RegionOutage(status=500)}


def test_bare_scenario_file_still_maps_models(tmp_path: Path) -> None:
    path = tmp_path / "plain.json"
    path.write_text(json.dumps({"gpt-4o": {"latency_ms": 5}}))

    loaded = load_scenario_file(path)

    assert loaded.scenarios == {("gpt-4o", None): Behaviour(latency_ms=5)}
    assert loaded.outages == {}


# --------------------------------------------------------------------------- control CLI


def run_ctl(sim: SimulatorProcess, capsys: pytest.CaptureFixture[str], *argv: str) -> object:
    code = ctl.main(["--url", sim.base_url, *argv])
    out = capsys.readouterr().out
    assert code == 0, out
    return json.loads(out)


def test_ctl_scripts_an_outage_demo(
    sim: SimulatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    run_ctl(sim, capsys, "reset")

    run_ctl(sim, capsys, "region-down", "us-east-1")
    run_ctl(sim, capsys, "scenario", "gemini-2.5-pro", "--always-status", "503")
    run_ctl(
        sim,
        capsys,
        "scenario",
        "deepseek.r1-v1:0",
        "--region",
        "ap-south-1",
        "--fail",
        "429x2@1.5",
        "--latency-ms",
        "20",
    )

    assert sim.regions_down() == {"us-east-1": {"status": 503, "message": None}}
    scenarios = sim.scenarios()
    assert scenarios["gemini-2.5-pro"]["always_status"] == 503
    scripted = scenarios["deepseek.r1-v1:0@ap-south-1"]
    assert scripted["failures"] == [
        {"status": 429, "count": 2, "retry_after_s": 1.5, "message": None, "code": None}
    ]
    assert scripted["latency_ms"] == 20

    run_ctl(sim, capsys, "region-up", "us-east-1")
    run_ctl(sim, capsys, "clear-scenario", "deepseek.r1-v1:0", "--region", "ap-south-1")

    assert sim.regions_down() == {}
    assert set(sim.scenarios()) == {"gemini-2.5-pro"}
    assert run_ctl(sim, capsys, "reset") == {"reset": True}
    assert sim.scenarios() == {}


def test_ctl_reports_control_api_errors(
    sim: SimulatorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    code = ctl.main(["--url", sim.base_url, "scenario", "m", "--json", '{"latency_ms": -1}'])

    assert code == 1
    assert "latency_ms" in capsys.readouterr().out
