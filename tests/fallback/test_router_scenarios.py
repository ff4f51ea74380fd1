"""Router scenarios through the real gateway, the real OpenAI SDK and the simulator over
real HTTP: retries, fallbacks, auth failures, deadlines, breakers, streaming failover,
weighted balancing, database routes and the seed chain rules."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from llmgateway.v1 import generation_pb2 as pb

from server.fallback.route_store import RouteStore
from server.fallback.routes import route_from_spec
from server.kernel.tokens import estimate_tokens
from simulator.testing import SimulatorProcess
from tests.fallback.conftest import BREAKER_COOLDOWN_S, BREAKER_FAILURES
from tests.support.gateway import RunningGateway, bearer

AUTH = bearer("generate")
OK, FAILED, SKIPPED = (pb.ATTEMPT_OUTCOME_SUCCESS, pb.ATTEMPT_OUTCOME_FAILED,
                       pb.ATTEMPT_OUTCOME_SKIPPED_CIRCUIT_OPEN)


def targets(*specs: str) -> list[pb.Target]:
    """``"provider/model"`` strings → Target messages."""
    return [pb.Target(provider=s.split("/")[0], model=s.split("/")[1]) for s in specs]


def ask(*specs: str, model: str = "", **kw: object) -> pb.GenerateRequest:
    return pb.GenerateRequest(model=model, targets=targets(*specs),
                              messages=[pb.Message(role="user", content="Hello")], **kw)


def ask_stream(*specs: str, **kw: object) -> pb.StreamGenerateRequest:
    return pb.StreamGenerateRequest(targets=targets(*specs),
                                    messages=[pb.Message(role="user", content="Hello")], **kw)


def trail(response: pb.GenerateResponse) -> list[tuple[str, int, str]]:
    return [(f"{a.target.provider}/{a.target.model}", a.outcome, a.error_reason)
            for a in response.attempts]


async def wait_for_stats(simulator: SimulatorProcess, predicate, timeout_s: float) -> dict:
    """Poll the simulator without blocking the loop the in-process gateway runs on."""
    deadline = time.monotonic() + timeout_s
    while not predicate(stats := simulator.stats()):
        assert time.monotonic() < deadline, f"simulator stats never matched: {stats}"
        await asyncio.sleep(0.02)
    return stats


def error_info(error: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    status = status_pb2.Status.FromString(
        dict(error.trailing_metadata())["grpc-status-details-bin"])
    info = error_details_pb2.ErrorInfo()
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
    return info


async def test_rate_limited_once_is_retried_on_the_same_target_without_fallback(
        stub, simulator: SimulatorProcess):
    simulator.set_scenario("fb-429", failures=[{"status": 429, "count": 1}])
    response = await stub.Generate(ask("simulator/fb-429", "sim-b/fb-429-backup"),
                                   metadata=AUTH, timeout=10)
    assert trail(response) == [("simulator/fb-429", FAILED, "rate_limited"),
                               ("simulator/fb-429", OK, "")]
    assert response.attempts[1].retry == 1
    assert response.served_by.model == "fb-429"


async def test_unavailable_primary_falls_back_after_its_retries(stub, simulator):
    simulator.set_scenario("fb-503", always_status=503)
    response = await stub.Generate(ask("simulator/fb-503", "sim-b/fb-503-backup"),
                                   metadata=AUTH, timeout=10)
    assert trail(response) == [("simulator/fb-503", FAILED, "unavailable"),
                               ("simulator/fb-503", FAILED, "unavailable"),
                               ("sim-b/fb-503-backup", OK, "")]
    assert (response.served_by.provider, response.served_by.model) == ("sim-b", "fb-503-backup")
    assert response.text.startswith("Hello from fb-503-backup.")


async def test_auth_failure_moves_to_the_next_provider_without_retrying(stub):
    response = await stub.Generate(ask("badkey/fb-auth", "simulator/fb-auth-backup"),
                                   metadata=AUTH, timeout=10)
    assert trail(response) == [("badkey/fb-auth", FAILED, "auth"),
                               ("simulator/fb-auth-backup", OK, "")]


async def test_invalid_request_returns_at_once_without_fallback(stub, simulator):
    simulator.set_scenario("fb-400", failures=[{"status": 400, "count": 5,
                                                "message": "messages: bad shape"}])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(ask("simulator/fb-400", "sim-b/fb-400-backup"), metadata=AUTH,
                            timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bad shape" in caught.value.details()
    assert simulator.stats()["requests_by_model"].get("fb-400-backup", 0) == 0


async def test_everything_down_is_unavailable_listing_every_attempt(stub, simulator):
    simulator.set_scenario("fb-down-a", always_status=503)
    simulator.set_scenario("fb-down-b", always_status=502)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.Generate(ask("simulator/fb-down-a", "sim-b/fb-down-b"), metadata=AUTH,
                            timeout=10)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    info = error_info(caught.value)
    assert info.reason.endswith("ALL_TARGETS_FAILED")
    listed = [info.metadata[f"attempt.{i}"] for i in range(4)]
    assert [line.split(":")[0] for line in listed] == [
        "simulator/fb-down-a", "simulator/fb-down-a", "sim-b/fb-down-b", "sim-b/fb-down-b"]
    assert all("unavailable" in line for line in listed)


async def test_a_300ms_deadline_with_a_slow_primary_never_hangs(stub, simulator):
    simulator.set_scenario("fb-slow", latency_ms=3000)
    started = time.monotonic()
    try:
        response = await stub.Generate(ask("simulator/fb-slow", "sim-b/fb-fast"),
                                       metadata=AUTH, timeout=0.3)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        assert response.served_by.model == "fb-fast"
    assert time.monotonic() - started < 2.0  # generous: the point is "no hang"
    # The abandoned upstream call is closed, not left running for its 3 s.
    await wait_for_stats(simulator, lambda s: s["in_flight"] == 0, timeout_s=2.5)


async def test_breaker_opens_after_repeated_failures_skips_then_half_opens(
        stub, simulator, router_gateway: RunningGateway):
    simulator.set_scenario("fb-breaker", always_status=503)
    chain = ("simulator/fb-breaker", "sim-b/fb-breaker-backup")
    labels = {"provider": "simulator", "model": "fb-breaker", "region": ""}
    failures = 0
    while failures < BREAKER_FAILURES:
        response = await stub.Generate(ask(*chain), metadata=AUTH, timeout=10)
        failures += sum(1 for a in response.attempts if a.outcome == FAILED)
    assert router_gateway.metric("llmgw_circuit_breaker_state", labels) == 2

    calls_before = simulator.stats()["requests_by_model"]["fb-breaker"]
    response = await stub.Generate(ask(*chain), metadata=AUTH, timeout=10)
    assert trail(response)[0] == ("simulator/fb-breaker", SKIPPED, "circuit_open")
    assert response.served_by.model == "fb-breaker-backup"
    assert simulator.stats()["requests_by_model"]["fb-breaker"] == calls_before

    simulator.remove_scenario("fb-breaker")  # the vendor recovers
    await asyncio.sleep(BREAKER_COOLDOWN_S + 0.1)
    response = await stub.Generate(ask(*chain), metadata=AUTH, timeout=10)
    assert trail(response) == [("simulator/fb-breaker", OK, "")], "the probe is served"
    assert router_gateway.metric("llmgw_circuit_breaker_state", labels) == 0


async def test_stream_failing_before_the_first_token_fails_over_transparently(stub, simulator):
    simulator.set_scenario("fb-drop0", drop_after_tokens=0)
    events = [e async for e in stub.StreamGenerate(
        ask_stream("simulator/fb-drop0", "sim-b/fb-drop0-backup"), metadata=AUTH, timeout=10)]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[0] == "start" and kinds[-1] == "end" and set(kinds[1:-1]) == {"delta"}
    assert events[0].start.served_by.model == "fb-drop0-backup"
    assert [a.outcome for a in events[-1].end.attempts][-1] == OK
    assert FAILED in [a.outcome for a in events[-1].end.attempts]
    text = "".join(e.delta.text for e in events if e.HasField("delta"))
    assert text.startswith("Hello from fb-drop0-backup.")


async def test_stream_failing_after_the_first_token_ends_with_error_and_partial_usage(
        stub, simulator):
    simulator.set_scenario("fb-drop3", drop_after_tokens=3)
    events = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for event in stub.StreamGenerate(
                ask_stream("simulator/fb-drop3", "sim-b/fb-drop3-backup"), metadata=AUTH,
                timeout=10):
            events.append(event)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).reason.endswith("UPSTREAM_STREAM_FAILED")
    deltas = [e for e in events if e.HasField("delta")]
    assert 1 <= len(deltas) <= 3  # 3 tokens; those of one upstream read leave as one delta
    end = events[-1].end
    sent = "".join(e.delta.text for e in deltas)
    # The vendor reported nothing: the prompt and the text sent, by the one token policy.
    assert end.finish_reason == pb.FINISH_REASON_ERROR
    assert end.usage.output_tokens == estimate_tokens(sent) and end.usage.input_tokens > 0
    assert end.served_by.model == "fb-drop3"
    assert simulator.stats()["requests_by_model"].get("fb-drop3-backup", 0) == 0


async def test_weighted_route_spreads_requests_by_weight(stub):
    async def one() -> str:
        response = await stub.Generate(ask(model="fb-weighted"), metadata=AUTH, timeout=10)
        return response.served_by.model

    served: list[str] = []
    for _ in range(8):
        served += await asyncio.gather(*(one() for _ in range(50)))
    share = served.count("fb-w-a") / len(served)
    # 400 draws at p=0.7: the standard deviation is 2.3 %; ±9 % is about 4 sigma.
    assert 0.61 < share < 0.79, share
    assert set(served) == {"fb-w-a", "fb-w-b"}


async def test_seed_rules_same_provider_first_and_system_instruction_reaches_every_fallback(
        stub, simulator):
    simulator.set_scenario("fb-seed-a", always_status=503)
    simulator.set_scenario("fb-seed-b", always_status=503)
    system = "You are terse. " * 10  # 30 words: visible in the vendor's prompt token count
    plain = await stub.Generate(ask("sim-b/fb-seed-c"), metadata=AUTH, timeout=10)
    response = await stub.Generate(ask(model="fb-seed-primary", system_instruction=system),
                                   metadata=AUTH, timeout=10)
    assert [m for m, *_ in trail(response)] == [
        "simulator/fb-seed-a", "simulator/fb-seed-a", "simulator/fb-seed-b",
        "simulator/fb-seed-b", "sim-b/fb-seed-c"]
    assert response.served_by.model == "fb-seed-c"
    # The fallback saw the system instruction: 30 words + one message's overhead more.
    assert response.usage.input_tokens == plain.usage.input_tokens + 30 + 3


async def test_a_route_changed_in_the_database_is_served_without_a_restart(
        stub, router_gateway: RunningGateway):
    store = RouteStore(router_gateway.gateway._engine)
    await store.put(route_from_spec("fb-db-route", {
        "targets": [{"provider": "sim-b", "model": "fb-db-target"}]}), updated_by="test")
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                response = await stub.Generate(ask(model="fb-db-route"), metadata=AUTH,
                                               timeout=10)
                break
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert time.monotonic() < deadline, "the route never appeared"
                await asyncio.sleep(0.1)
        assert (response.served_by.provider, response.served_by.model) == \
            ("sim-b", "fb-db-target")
    finally:
        await store.delete("fb-db-route")


def test_routes_cli_sets_lists_and_deletes_a_stored_route(routes_pg_url, tmp_path):
    import subprocess
    import sys

    from tests.support.gateway import ROOT

    env = {"DATABASE_URL": routes_pg_url, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}

    def llmgw(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server.cli", "routes", *args], check=False,
                              cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=60)

    bad = llmgw("set", "fb-cli-route", "--spec", "{targets: [{provider: nope, model: x}]}")
    assert bad.returncode == 2 and "unknown provider 'nope'" in bad.stderr
    ok = llmgw("set", "fb-cli-route", "--spec",
               "{strategy: weighted, targets: [{provider: simulator, model: a, weight: 3}]}")
    assert ok.returncode == 0, ok.stderr
    listed = llmgw("list")
    line = next(l for l in listed.stdout.splitlines() if l.startswith("fb-cli-route"))
    assert "[database] weighted: simulator/a w3" in line
    assert "sim-chat" in listed.stdout  # configured routes are listed too
    assert llmgw("delete", "fb-cli-route").returncode == 0
    assert "fb-cli-route" not in llmgw("list").stdout


async def test_a_spent_retry_allowance_moves_on_instead_of_retrying(simulator, routes_pg_url,
                                                                  data_dir):
    from llmgateway.v1 import generation_pb2_grpc as pb_grpc

    from tests.fallback.conftest import router_config
    from tests.support.gateway import running_gateway

    raw = router_config(simulator, data_dir, routing={
        "retry_ratio": 0, "retry_min_per_s": 0})  # one retry, never refilled
    simulator.set_scenario("fb-budget", always_status=503)
    async with running_gateway(raw, routes_pg_url) as gw:
        async with grpc.aio.insecure_channel(gw.target) as channel:
            stub = pb_grpc.GenerationServiceStub(channel)
            first = await stub.Generate(ask("simulator/fb-budget", "sim-b/fb-budget-backup"),
                                        metadata=AUTH, timeout=10)
            second = await stub.Generate(ask("simulator/fb-budget", "sim-b/fb-budget-backup"),
                                         metadata=AUTH, timeout=10)
        assert [a.retry for a in first.attempts] == [0, 1, 0]
        assert [a.retry for a in second.attempts] == [0, 0]
        assert second.served_by.model == "fb-budget-backup"
        assert gw.metric("llmgw_retries_denied_total") == 1
