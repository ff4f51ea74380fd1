"""Prices: what a call costs is the served target's price, with each vendor's cache
read/write rates, and an unpriced target is said, never silently free."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.billing.pricing import Metered, Price, PriceList, cost_micros
from server.fallback.routes import configured_targets
from server.kernel.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]
PROVIDERS = "providers:\n  a: {kind: openai, base_url: 'http://x/v1'}\n" \
            "  b: {kind: openai, base_url: 'http://y/v1'}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(PROVIDERS + text)
    return path


def test_cache_reads_and_writes_have_their_own_rates():
    price = Price(input_per_million_micros=3_000_000, cached_input_per_million_micros=300_000,
                  cache_write_input_per_million_micros=3_750_000,
                  output_per_million_micros=15_000_000)
    used = Metered(input_tokens=1_000_000, cached_input_tokens=200_000,
                   cache_write_tokens=300_000, output_tokens=10_000)
    # 500k plain + 200k read + 300k written + 10k out
    assert cost_micros(price, used) == 1_500_000 + 60_000 + 1_125_000 + 150_000


def test_unset_cache_rates_are_the_input_rate_not_free():
    price = Price(input_per_million_micros=2_000_000)
    used = Metered(input_tokens=1_000, cached_input_tokens=400, cache_write_tokens=600)
    assert cost_micros(price, used) == cost_micros(price, Metered(input_tokens=1_000)) == 2_000


def test_time_priced_cost_rounds_up_per_call():
    assert cost_micros(Price(per_minute_micros=600_000), Metered(duration_ms=10_000)) == 100_000
    assert cost_micros(Price(per_minute_micros=1), Metered(duration_ms=1)) == 1


def test_targets_are_priced_from_prices_then_their_routes(tmp_path):
    config = load_config(write(tmp_path, """
prices:
  a: {m1: {input_per_million_micros: 5, max_output_tokens: 77}}
models:
  r1:
    targets: [{provider: a, model: m1}, {provider: b, model: m2}]
    pricing: {input_per_million_micros: 9}
  r2:
    targets: [{provider: b, model: m3}]
"""), environ={})
    prices = PriceList.from_config(config)
    m1, m2 = prices.for_target("a", "m1"), prices.for_target("b", "m2")
    assert m1 is not None and (m1.price.input_per_million_micros, m1.max_output_tokens) == (5, 77)
    assert m2 is not None and m2.price.input_per_million_micros == 9  # the route's pricing
    assert prices.unpriced(configured_targets(config)) == ["b/m3"]
    assert prices.get("r1") == Price(input_per_million_micros=9)  # Charge RPC by route name
    assert prices.get("a/m1") == m1.price


def test_two_routes_pricing_one_target_differently_is_a_config_error(tmp_path):
    text = """
models:
  r1: {targets: [{provider: a, model: m}], pricing: {input_per_million_micros: 1}}
  r2: {targets: [{provider: a, model: m}], pricing: {input_per_million_micros: 2}}
"""
    with pytest.raises(ConfigError, match=r"models\.r2\.pricing.*set prices\.a\.m"):
        load_config(write(tmp_path, text), environ={})
    settled = text + "prices:\n  a: {m: {input_per_million_micros: 3}}\n"
    assert load_config(write(tmp_path, settled), environ={}).prices["a"]["m"]


def test_prices_must_name_configured_providers(tmp_path):
    with pytest.raises(ConfigError, match=r"prices\.ghost"):
        load_config(write(tmp_path, "prices:\n  ghost: {m: {}}\n"), environ={})


def test_check_config_lists_unpriced_targets(tmp_path):
    path = write(tmp_path, "models:\n  r: {targets: [{provider: a, model: free-ride}]}\n")
    result = subprocess.run([sys.executable, "-m", "server.cli", "check-config",
                             "--config", str(path)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "target a/free-ride has no price" in result.stdout


def test_every_packaged_target_is_priced():
    config = load_config(environ={})
    assert PriceList.from_config(config).unpriced(configured_targets(config)) == []
