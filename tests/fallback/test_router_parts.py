"""The router's parts as specifications: breakers, retry allowance, weights, region chains,
chain building. Pure code with a fake clock; the end-to-end behaviour is in
test_router_scenarios.py."""

from __future__ import annotations

import random

import pytest

from server.kernel.config import GatewayConfig
from server.fallback.balance import weighted_order
from server.fallback.breaker import BreakerBoard, BreakerPolicy, BreakerState, CircuitBreaker
from server.fallback.retry_allowance import RetryAllowance
from server.fallback.chain import ChainBuilder, Target
from server.fallback.regions import RegionPolicy, region_chain
from server.fallback.routes import RouteCache, route_from_spec, routes_from_config


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_breaker_opens_after_consecutive_failures_then_half_opens_and_closes():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=3, cooldown_s=5), clock)
    for _ in range(2):
        breaker.record_failure()
    assert breaker.allow() and breaker.state is BreakerState.CLOSED
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN and not breaker.allow()

    clock.now += 5
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.allow(), "one probe goes through"
    assert not breaker.allow(), "but only one at a time"
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED and breaker.allow()


def test_failed_probe_reopens_for_another_cooldown():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=1, cooldown_s=5), clock)
    breaker.record_failure()
    clock.now += 5
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 4.9
    assert not breaker.allow()


def test_a_lost_probe_does_not_wedge_the_breaker():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=1, cooldown_s=2), clock)
    breaker.record_failure()
    clock.now += 2
    assert breaker.allow()  # the probe's caller never reports back
    clock.now += 2
    assert breaker.allow()


def test_breaker_opens_on_error_rate_in_the_window_without_consecutive_run():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=100, error_rate=0.5,
                                           window_s=10, min_calls=10), clock)
    for _ in range(5):
        breaker.record_success()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN


def test_error_rate_forgets_calls_older_than_the_window():
    clock = Clock()
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=100, error_rate=0.5,
                                           window_s=10, min_calls=4), clock)
    for _ in range(3):
        breaker.record_failure()
        breaker.record_success()
    clock.now += 11
    breaker.record_failure()  # alone in the window: 1 call < min_calls
    assert breaker.state is BreakerState.CLOSED


def test_board_keeps_one_breaker_per_target_and_reports_changes():
    changes: list[tuple[Target, BreakerState]] = []
    board = BreakerBoard(BreakerPolicy(consecutive_failures=1), Clock(),
                         on_change=lambda key, state: changes.append((key, state)))
    a, b = Target("bedrock", "m", "ap-south-1"), Target("bedrock", "m", "us-east-1")
    board.get(a).record_failure()
    assert board.get(b).allow() and not board.get(a).allow()
    assert (a, BreakerState.OPEN) in changes and board.states()[b] is BreakerState.CLOSED


def test_retry_allowance_allows_a_share_of_requests_plus_a_floor_per_second():
    clock = Clock()
    allowance = RetryAllowance(ratio=0.1, min_per_s=0, clock=clock)
    while allowance.try_spend():  # drain the initial allowance
        pass
    for _ in range(100):
        allowance.on_request()
    spent = sum(allowance.try_spend() for _ in range(50))
    assert spent == 10
    floor = RetryAllowance(ratio=0, min_per_s=2, clock=clock)
    while floor.try_spend():
        pass
    clock.now += 1
    assert [floor.try_spend() for _ in range(3)] == [True, True, False]


def test_weighted_order_follows_the_weights_and_keeps_standby_last():
    rng = random.Random(7).random
    firsts = [weighted_order(["a", "b", "c"], [70, 30, 0], rng)[0] for _ in range(5000)]
    share = firsts.count("a") / len(firsts)
    assert 0.66 < share < 0.74 and "c" not in firsts
    assert weighted_order(["a", "b", "c"], [70, 30, 0], rng)[-1] == "c"


@pytest.mark.parametrize(("policy", "target", "preferred", "pinned", "expected"), [
    (RegionPolicy("us-east-1", ("us-east-1", "eu-west-1")), "ap-south-1", "", False,
     ["ap-south-1", "us-east-1", "eu-west-1"]),
    (RegionPolicy("us-east-1", ("eu-west-1",)), "ap-south-1", "eu-west-1", False,
     ["eu-west-1", "ap-south-1", "us-east-1"]),
    (RegionPolicy("us-east-1", ("eu-west-1",)), "ap-south-1", "eu-west-1", True, ["ap-south-1"]),
    (RegionPolicy(), "", "", False, [""]),
])
def test_region_chain_order(policy, target, preferred, pinned, expected):
    assert region_chain(policy, target, preferred, pinned) == expected


def config(**models) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "providers": {
            "gemini": {"kind": "gemini"}, "openai": {"kind": "openai"},
            "byteplus": {"kind": "openai"},
            "bedrock": {"kind": "bedrock", "region": "us-east-1",
                        "failover_regions": ["us-east-1", "eu-west-1"]},
        },
        "models": models,
        "universal_fallback": {"provider": "gemini", "model": "gemini-2.0-flash"},
    })


def test_seed_chain_same_provider_fallbacks_come_before_cross_provider_then_universal():
    cfg = config(**{
        "gemini-2.5-pro": {"targets": [{"provider": "gemini", "model": "gemini-2.5-pro"}],
                           "fallbacks": ["gpt-4o", "gemini-2.5-flash"]},
        "gemini-2.5-flash": {"targets": [{"provider": "gemini", "model": "gemini-2.5-flash"}]},
        "gpt-4o": {"targets": [{"provider": "openai", "model": "gpt-4o"}]},
    })
    chain = ChainBuilder(cfg, cfg.providers).build("gemini-2.5-pro")
    assert [str(t) for t in chain] == ["gemini/gemini-2.5-pro", "gemini/gemini-2.5-flash",
                                       "openai/gpt-4o", "gemini/gemini-2.0-flash"]


def test_seed_chain_bedrock_deepseek_regions_then_byteplus_then_gemini():
    cfg = config(**{
        "deepseek-r1": {"targets": [{"provider": "bedrock", "model": "deepseek.r1-v1:0",
                                     "region": "ap-south-1"}],
                        "fallbacks": ["deepseek-byteplus"]},
        "deepseek-byteplus": {"targets": [{"provider": "byteplus", "model": "deepseek-r1"}]},
    })
    chain = ChainBuilder(cfg, cfg.providers).build("deepseek-r1")
    assert [str(t) for t in chain] == [
        "bedrock/deepseek.r1-v1:0@ap-south-1", "bedrock/deepseek.r1-v1:0@us-east-1",
        "bedrock/deepseek.r1-v1:0@eu-west-1", "byteplus/deepseek-r1",
        "gemini/gemini-2.0-flash"]


def test_request_region_goes_first_and_explicit_region_is_a_pin():
    cfg = config(m={"targets": [{"provider": "bedrock", "model": "x"}]})
    builder = ChainBuilder(cfg, cfg.providers)
    assert [t.region for t in builder.build("m", region="eu-west-1")[:2]] == \
        ["eu-west-1", "us-east-1"]
    chain = builder.build("", explicit=[Target("bedrock", "x", "ap-south-1")])
    assert [str(t) for t in chain] == ["bedrock/x@ap-south-1", "gemini/gemini-2.0-flash"]


def test_database_routes_override_configured_ones_without_a_rebuild():
    cfg = config(m={"targets": [{"provider": "openai", "model": "gpt-4o"}]})
    cache = RouteCache(routes_from_config(cfg))
    builder = ChainBuilder(cfg, cfg.providers, routes=cache)
    assert builder.build("m")[0] == Target("openai", "gpt-4o")
    cache.replace_overrides({"m": route_from_spec(
        "m", {"targets": [{"provider": "gemini", "model": "gemini-2.5-flash"}]})})
    assert builder.build("m")[0] == Target("gemini", "gemini-2.5-flash")
    cache.replace_overrides({})
    assert builder.build("m")[0] == Target("openai", "gpt-4o")
