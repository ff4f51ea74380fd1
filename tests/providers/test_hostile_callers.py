"""What a caller controls cannot grow the gateway's resources or escape as an internal
error: Bedrock serves only its configured regions (so no client per invented region),
Gemini model ids with URL-significant characters are refused before any request, and no
error message echoes unbounded caller or vendor text."""

from __future__ import annotations

import pytest

from server.kernel.config import GatewayConfig
from server.providers.base import (
    MAX_ECHO_CHARS,
    ChatMessage,
    ErrorKind,
    ProviderError,
    ProviderRequest,
)
from server.providers.gemini import build_request as gemini_request
from server.providers.registry import configured_regions
from tests.providers.conftest import BEDROCK_REGIONS, Vendor
from tests.providers.test_adapter_contract import ask


def hello(model: str, region: str = "") -> ProviderRequest:
    return ProviderRequest(model, (ChatMessage("user", "hi"),), region=region)


@pytest.fixture
async def bedrock(vendor: Vendor, provider):
    if vendor.name != "bedrock":
        pytest.skip("Bedrock only")
    return provider


@pytest.mark.parametrize("vendor", ["bedrock"], indirect=True)
async def test_bedrock_refuses_a_region_it_is_not_configured_for(bedrock, simulator):
    invented = "xx-" + "q" * 5000 + "-1"
    for call in (bedrock.generate(hello("hc-region", invented), 5),
                 anext(bedrock.stream(hello("hc-region", invented), 5))):
        with pytest.raises(ProviderError) as caught:
            await call
        assert caught.value.kind is ErrorKind.INVALID_REQUEST
        assert "is not configured for provider 'bedrock'" in caught.value.message
        assert len(caught.value.message) < 2 * MAX_ECHO_CHARS
    assert "hc-region" not in simulator.stats()["requests_by_model"]
    assert set(bedrock._clients) <= set(BEDROCK_REGIONS)


@pytest.mark.parametrize("vendor", ["bedrock"], indirect=True)
async def test_bedrock_serves_every_configured_region(bedrock):
    for region in BEDROCK_REGIONS:
        assert (await bedrock.generate(hello("hc-known", region), 10)).text


def test_configured_regions_are_the_providers_and_its_routes():
    raw = {"providers": {"br": {"kind": "bedrock", "region": "us-east-1",
                                "failover_regions": ["eu-west-1"]},
                         "other": {"kind": "openai", "base_url": "http://x"}},
           "models": {"m": {"targets": [{"provider": "br", "model": "x", "region": "ap-south-1"},
                                        {"provider": "other", "model": "y",
                                         "region": "nowhere-1"}]}},
           "universal_fallback": {"provider": "br", "model": "z", "region": "sa-east-1"}}
    config = GatewayConfig.model_validate(raw)
    assert configured_regions("br", config) == {"us-east-1", "eu-west-1", "ap-south-1",
                                                "sa-east-1"}


@pytest.mark.parametrize("model", [
    "gemini-2.5-flash?alt=sse", "models/../../v1/files", "a/b", "x#frag", "sp ace",
    "tunedModels/ok/../x", "%2e%2e", "", "g" * 300,
])
def test_gemini_model_ids_with_url_characters_are_invalid_requests(model):
    with pytest.raises(ProviderError) as caught:
        gemini_request(hello(model), 5)
    assert caught.value.kind is ErrorKind.INVALID_REQUEST
    assert len(caught.value.message) <= MAX_ECHO_CHARS + 50


@pytest.mark.parametrize("model", ["gemini-2.5-flash", "models/gemini-2.0-flash-001",
                                   "tunedModels/my_model.v2", "gemini-exp-1206"])
def test_gemini_accepts_real_model_ids(model):
    assert gemini_request(hello(model), 5)["model"] == model


@pytest.mark.parametrize("vendor", ["gemini"], indirect=True)
async def test_a_gemini_call_with_a_bad_model_never_reaches_the_vendor(vendor, provider,
                                                                      simulator):
    for call in (provider.generate(ask("hc?x=1", vendor), 5),
                 anext(provider.stream(ask("hc?x=1", vendor), 5))):
        with pytest.raises(ProviderError) as caught:
            await call
        assert caught.value.kind is ErrorKind.INVALID_REQUEST


async def test_vendor_error_text_is_bounded(provider, vendor, simulator):
    model = f"pc-{vendor.name}-longmsg"
    simulator.set_scenario(model, failures=[{"status": 400, "count": 1,
                                             "message": "bad " * 2000}])
    with pytest.raises(ProviderError) as caught:
        await provider.generate(ask(model, vendor), timeout_s=10)
    assert caught.value.kind is ErrorKind.INVALID_REQUEST
    assert len(caught.value.message) <= 2 * MAX_ECHO_CHARS


def test_provider_errors_cap_whatever_message_they_are_given():
    assert len(ProviderError(ErrorKind.UNAVAILABLE, "x" * 10_000).message) <= 2 * MAX_ECHO_CHARS
