"""Chains across real vendor protocols through the gateway: the Bedrock region chain, the
seed chains (gemini-2.5-pro; deepseek on Bedrock ap-south-1 → Byteplus → gemini-2.0-flash),
the system instruction reaching every vendor, and streaming failover between vendors —
the Anthropic, google-genai, boto3 and OpenAI SDKs against the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from itertools import groupby
from pathlib import Path

import grpc
import pytest
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from simulator.testing import SimulatorProcess
from tests.fallback.conftest import router_config
from tests.support.gateway import bearer, running_gateway

AUTH = bearer("generate")
SYSTEM = "Answer in one short sentence please. " * 5  # 30 words


@pytest.fixture(scope="module")
async def seeded(simulator: SimulatorProcess, routes_pg_url: str,
                 data_dir: Path) -> AsyncIterator[pb_grpc.GenerationServiceStub]:
    """A gateway with the seed routes on simulated vendors and a universal fallback."""
    models = {
        "vc-gemini-2.5-pro": {"targets": [{"provider": "sim-gemini", "model": "vc-g25-pro"}],
                              "fallbacks": ["vc-gpt", "vc-gemini-2.5-flash"]},
        "vc-gemini-2.5-flash": {"targets": [{"provider": "sim-gemini", "model": "vc-g25-flash"}]},
        "vc-gpt": {"targets": [{"provider": "simulator", "model": "vc-gpt"}]},
        "vc-deepseek": {"targets": [{"provider": "sim-bedrock", "model": "vc-deepseek",
                                     "region": "ap-south-1"}],
                        "fallbacks": ["vc-byteplus"]},
        "vc-byteplus": {"targets": [{"provider": "sim-byteplus", "model": "vc-byteplus-r1"}]},
        "vc-claude": {"targets": [{"provider": "sim-anthropic", "model": "vc-claude"}],
                      "fallbacks": ["vc-bedrock-stream"]},
        "vc-bedrock-stream": {"targets": [{"provider": "sim-bedrock", "model": "vc-br-stream",
                                           "region": "ap-south-1"}]},
    }
    raw = router_config(simulator, data_dir,
                        universal_fallback={"provider": "sim-gemini", "model": "vc-g20-flash"})
    raw["models"] = {**raw["models"], **models}
    async with running_gateway(raw, routes_pg_url) as gw:
        async with grpc.aio.insecure_channel(gw.target) as channel:
            yield pb_grpc.GenerationServiceStub(channel)


def ask(model: str, **kw: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(model=model, messages=[pb.Message(role="user", content="Hello")],
                              **kw)


def trail(response) -> list[str]:
    return [f"{a.target.provider}/{a.target.model}" + (f"@{a.target.region}"
                                                       if a.target.region else "")
            + f" {pb.AttemptOutcome.Name(a.outcome)[16:].lower()}" for a in response.attempts]


async def test_bedrock_region_down_is_served_by_the_next_region(seeded, simulator):
    simulator.set_region_down("ap-south-1")
    try:
        response = await seeded.Generate(ask("vc-deepseek"), metadata=AUTH, timeout=10)
    finally:
        simulator.set_region_up("ap-south-1")
    assert (response.served_by.provider, response.served_by.region) == \
        ("sim-bedrock", "us-east-1")
    assert trail(response) == ["sim-bedrock/vc-deepseek@ap-south-1 failed",
                               "sim-bedrock/vc-deepseek@ap-south-1 failed",
                               "sim-bedrock/vc-deepseek@us-east-1 success"]


async def test_request_region_preference_goes_first(seeded, simulator):
    response = await seeded.Generate(ask("vc-deepseek", region="eu-west-1"), metadata=AUTH,
                                     timeout=10)
    assert response.served_by.region == "eu-west-1" and len(response.attempts) == 1
    assert simulator.stats()["requests_by_region_model"].get("eu-west-1/vc-deepseek", 0) >= 1


async def test_seed_deepseek_regions_then_byteplus_then_universal_gemini(seeded, simulator):
    for region in ("ap-south-1", "us-east-1", "eu-west-1"):
        simulator.set_scenario("vc-deepseek", region=region, always_status=503)
    simulator.set_scenario("vc-byteplus-r1", always_status=429)
    try:
        response = await seeded.Generate(ask("vc-deepseek", system_instruction=SYSTEM),
                                         metadata=AUTH, timeout=10)
    finally:
        for region in ("ap-south-1", "us-east-1", "eu-west-1"):
            simulator.remove_scenario("vc-deepseek", region=region)
    # Retries per target vary with breaker state left by earlier tests; the order may not.
    tried = [target for target, _ in groupby(line.rsplit(" ", 1)[0] for line in trail(response))]
    assert tried == [
        "sim-bedrock/vc-deepseek@ap-south-1", "sim-bedrock/vc-deepseek@us-east-1",
        "sim-bedrock/vc-deepseek@eu-west-1", "sim-byteplus/vc-byteplus-r1",
        "sim-gemini/vc-g20-flash"]
    assert response.text.startswith("Hello from vc-g20-flash.")


async def test_seed_gemini_pro_falls_to_flash_before_another_provider(seeded, simulator):
    simulator.set_scenario("vc-g25-pro", always_status=503)
    response = await seeded.Generate(ask("vc-gemini-2.5-pro"), metadata=AUTH, timeout=10)
    assert (response.served_by.provider, response.served_by.model) == \
        ("sim-gemini", "vc-g25-flash")
    simulator.set_scenario("vc-g25-flash", always_status=500)
    response = await seeded.Generate(ask("vc-gemini-2.5-pro"), metadata=AUTH, timeout=10)
    assert response.served_by.model == "vc-gpt"


async def test_system_instruction_reaches_every_vendor_in_the_chain(seeded, simulator):
    """Each vendor counts the system prompt in its input tokens: served with and without
    it, the difference is the instruction's 30 words (plus any per-message overhead)."""
    chain = [("sim-anthropic", "vc-sys-claude"), ("sim-bedrock", "vc-sys-bedrock"),
             ("sim-gemini", "vc-sys-gemini"), ("simulator", "vc-sys-gpt")]
    served = []
    for i, (provider, model) in enumerate(chain):
        for _, earlier in chain[:i]:
            simulator.set_scenario(earlier, always_status=503)
        targets = [pb.Target(provider=p, model=m) for p, m in chain]
        plain = await seeded.Generate(ask("", targets=targets), metadata=AUTH, timeout=10)
        with_system = await seeded.Generate(ask("", targets=targets, system_instruction=SYSTEM),
                                            metadata=AUTH, timeout=10)
        assert plain.served_by.model == with_system.served_by.model == model
        served.append(model)
        assert 30 <= with_system.usage.input_tokens - plain.usage.input_tokens <= 40
    assert served == [m for _, m in chain]


async def test_stream_from_anthropic_dropping_before_text_fails_over_to_bedrock(seeded,
                                                                                simulator):
    simulator.set_scenario("vc-claude", drop_after_tokens=0)
    events = [e async for e in seeded.StreamGenerate(
        pb.StreamGenerateRequest(model="vc-claude",
                                 messages=[pb.Message(role="user", content="Hi")]),
        metadata=AUTH, timeout=10)]
    assert events[0].start.served_by.provider == "sim-bedrock"
    assert events[0].start.served_by.region == "ap-south-1"
    text = "".join(e.delta.text for e in events if e.HasField("delta"))
    assert text.startswith("Hello from vc-br-stream.")
    end = events[-1].end
    assert end.finish_reason == pb.FINISH_REASON_STOP and end.usage.output_tokens == 12
