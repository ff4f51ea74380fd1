"""Caller input never grows metrics or in-memory maps without bound: closed label sets,
a bounded breaker board, a stream cap per caller."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from server.fallback.breaker import BreakerBoard, BreakerPolicy, BreakerState
from server.interceptors.concurrency import StreamsPerCaller
from server.kernel.metrics import (
    MAX_AD_HOC_BREAKER_SERIES,
    OTHER,
    LabelSet,
    MetricLabels,
    Metrics,
)


class Snapshot:
    """Stands in for RouteCache.all: a new object on every refresh."""

    def __init__(self, *values: str) -> None:
        self.current = list(values)

    def refresh(self, *values: str) -> None:
        self.current = list(values)

    def __call__(self) -> list[str]:
        return self.current


def test_a_value_outside_the_set_folds_to_other():
    regions = LabelSet(["", "us-east-1"])
    assert regions.fold("us-east-1") == "us-east-1"
    assert regions.fold("") == ""
    assert regions.fold("mars-north-9") == OTHER
    assert "mars-north-9" not in regions


def test_a_followed_source_adds_values_when_it_is_refreshed_not_when_asked():
    routes = Snapshot("claude")
    models = LabelSet(["gpt"]).follow(routes, lambda values: values)
    assert [models.fold(m) for m in ("gpt", "claude", "gemini")] == ["gpt", "claude", OTHER]
    routes.refresh("gemini")  # a database refresh swapped the routes
    assert [models.fold(m) for m in ("gpt", "claude", "gemini")] == ["gpt", OTHER, "gemini"]


def test_metrics_outside_a_gateway_pass_values_through_and_a_gateway_closes_them():
    assert Metrics(CollectorRegistry()).known.target("p", "m", "r") == ("p", "m", "r")
    closed = MetricLabels(LabelSet(["p"]), LabelSet(["m"]), LabelSet([""]), LabelSet())
    assert closed.target("p", "m", "") == ("p", "m", "")
    assert closed.target("p", "x", "r") == ("p", OTHER, OTHER)
    assert not closed.is_known_target("p", "x", "")


def test_a_thousand_random_models_add_one_series():
    registry = CollectorRegistry()
    metrics = Metrics(registry, MetricLabels(providers=LabelSet(["sim"]),
                                             models=LabelSet(["sim-chat"]),
                                             regions=LabelSet([""])))
    before = len(generate_latest(registry))
    for i in range(1000):
        metrics.provider_attempts.labels(
            *metrics.known.target("sim", f"random-{i}", f"region-{i}"), "success").inc()
    text = generate_latest(registry).decode()
    assert 'model="other",outcome="success",provider="sim",region="other"' in text
    assert "random-" not in text and len(text) - before < 2000


def test_the_breaker_board_forgets_the_least_recently_used_closed_breaker():
    board: BreakerBoard[str] = BreakerBoard(BreakerPolicy(consecutive_failures=1),
                                            max_breakers=3)
    board.get("open").record_failure()
    board.get("a")
    board.get("b")
    board.get("a")  # used again: "b" is now the least recently used closed one
    board.get("c")
    assert len(board) == 3
    assert set(board.states()) == {"open", "a", "c"}
    assert board.states()["open"] is BreakerState.OPEN


def test_the_breaker_board_stays_bounded_under_ten_thousand_targets():
    board: BreakerBoard[str] = BreakerBoard(BreakerPolicy(), max_breakers=100)
    for i in range(10_000):
        board.get(f"target-{i}").record_success()
    assert len(board) == 100


def test_the_breaker_board_stays_bounded_even_when_every_breaker_is_open():
    board: BreakerBoard[str] = BreakerBoard(BreakerPolicy(consecutive_failures=1),
                                            max_breakers=2)
    for key in ("a", "b", "c"):
        board.get(key).record_failure()
    assert set(board.states()) == {"b", "c"}


def test_streams_per_caller_refuses_above_the_limit_and_forgets_idle_callers():
    streams = StreamsPerCaller(limit=2)
    assert streams.acquire("svc") and streams.acquire("svc")
    assert not streams.acquire("svc")
    assert streams.acquire("other-svc")
    streams.release("svc")
    assert streams.acquire("svc")
    for subject in ("svc", "svc", "other-svc"):
        streams.release(subject)
    assert len(streams) == 0


def test_limits_must_be_positive():
    with pytest.raises(ValueError):
        StreamsPerCaller(0)
    with pytest.raises(ValueError):
        BreakerBoard(BreakerPolicy(), max_breakers=0)


def test_ad_hoc_targets_show_their_breaker_only_while_not_closed_and_only_a_few():
    registry = CollectorRegistry()
    metrics = Metrics(registry, MetricLabels(LabelSet(["sim"]), LabelSet(["sim-chat"]),
                                             LabelSet([""]), LabelSet()))

    def state(model: str) -> float | None:
        return registry.get_sample_value("llmgw_circuit_breaker_state",
                                         {"provider": "sim", "model": model, "region": ""})

    metrics.set_breaker_state("sim", "sim-chat", "", 0)
    assert state("sim-chat") == 0  # a configured target always has its series
    metrics.set_breaker_state("sim", "ad-hoc", "", 0)
    assert state("ad-hoc") is None
    metrics.set_breaker_state("sim", "ad-hoc", "", 2)
    assert state("ad-hoc") == 2  # open: visible
    metrics.set_breaker_state("sim", "ad-hoc", "", 0)
    assert state("ad-hoc") is None  # closed again: gone
    for i in range(MAX_AD_HOC_BREAKER_SERIES + 50):
        metrics.set_breaker_state("sim", f"open-{i}", "", 2)
    shown = generate_latest(registry).decode().count('model="open-')
    assert shown == MAX_AD_HOC_BREAKER_SERIES
