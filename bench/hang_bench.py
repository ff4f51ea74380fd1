"""Hang benchmark: a primary that never answers, with the default provider timeout (60 s),
and a healthy fallback, through a real `llmgw serve` process and the local simulator
(127.0.0.1 only).

Every call asks for [primary (simulator scenario ``timeout``), fallback] with a short gRPC
deadline. Per-attempt budgets (server/fallback/router.py) give the silent primary its
share of the deadline and the fallback the rest; the primary's timeouts reach its circuit
breaker, which then skips it. Reported: success %, latency p50/p99, the index of the first
call whose attempt list shows ``skipped_circuit_open`` (calls are numbered in the order
they were sent), the breaker state on the gateway's /metrics at the end, and how many calls
the primary received (simulator stats). Targets: ≥ 99.9 % succeed, breaker open within
the first 50 calls.

    .venv/bin/python bench/hang_bench.py                 # 2,000 calls, c=16, 2 s deadline
    .venv/bin/python bench/hang_bench.py --calls 500     # shorter
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "bench"), str(ROOT / "generated")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import grpc
import pgserver
from _common import fmt, percentile, table
from fallback_bench import gateway
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from simulator.testing import SimulatorProcess
from tests.support.gateway import raw_test_config, token

PRIMARY, FALLBACK = "hb-hang", "hb-backup"
BREAKER_TARGET = 50
SUCCESS_TARGET = 99.9


def config(sim: SimulatorProcess, data_dir: Path, database_url: str) -> dict:
    """The packaged defaults (provider timeout_s 60, breaker after 5 failures, 10 s
    cool-down) at the simulator; the fallback at a second provider; no rate limits."""
    raw = raw_test_config(sim.base_url, data_dir, database={"url": database_url},
                          rate_limits={"enabled": False}, server={"grace_period_s": 1})
    raw["providers"]["sim-b"] = {"kind": "openai", "base_url": f"{sim.base_url}/v1",
                                 "requires_api_key": False}
    return raw


async def run(target: str, calls: int, concurrency: int, deadline_s: float) -> dict:
    metadata = (("authorization", f"Bearer {token('generate')}"),)
    request = pb.GenerateRequest(
        targets=[pb.Target(provider="simulator", model=PRIMARY),
                 pb.Target(provider="sim-b", model=FALLBACK)],
        messages=[pb.Message(role="user", content="Hello")],
        config=pb.GenerationConfig(max_output_tokens=16))
    ok = [False] * calls
    skipped = [False] * calls
    latencies: list[float] = []
    codes: dict[str, int] = {}
    pending = iter(range(calls))
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)

        async def caller() -> None:
            for i in pending:
                started = time.perf_counter()
                try:
                    response = await stub.Generate(request, metadata=metadata,
                                                   timeout=deadline_s)
                except grpc.aio.AioRpcError as error:
                    codes[error.code().name] = codes.get(error.code().name, 0) + 1
                    continue
                latencies.append((time.perf_counter() - started) * 1000)
                ok[i] = response.served_by.model == FALLBACK
                skipped[i] = any(a.outcome == pb.ATTEMPT_OUTCOME_SKIPPED_CIRCUIT_OPEN
                                 for a in response.attempts)

        started = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"ok": ok, "skipped": skipped, "latencies": latencies, "codes": codes,
            "elapsed": elapsed}


def breaker_state(metrics_text: str) -> str:
    pattern = (r'^llmgw_circuit_breaker_state\{[^}]*model="' + PRIMARY + r'"[^}]*\}\s+(\S+)')
    found = re.search(pattern, metrics_text, re.MULTILINE)
    return {"0.0": "closed", "1.0": "half-open", "2.0": "open"}.get(
        found.group(1) if found else "", "?")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--deadline", type=float, default=2.0, help="gRPC deadline, seconds")
    ns = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hang-bench-") as tmp, SimulatorProcess() as sim:
        workdir = Path(tmp)
        postgres = pgserver.get_server(workdir / "pg", cleanup_mode="stop")
        try:
            sim.set_scenario(PRIMARY, timeout=True)
            with gateway(config(sim, workdir, postgres.get_uri()), workdir) as gw:
                result = asyncio.run(run(gw.target, ns.calls, ns.concurrency, ns.deadline))
                state = breaker_state(gw.metrics_text())
            primary_calls = sim.stats()["requests_by_model"].get(PRIMARY, 0)
        finally:
            postgres.cleanup()

    ok, skipped, lat = result["ok"], result["skipped"], result["latencies"]
    success = 100.0 * sum(ok) / ns.calls
    opened_at = skipped.index(True) if any(skipped) else None
    rows = [[f"{ns.calls} calls, c={ns.concurrency}, deadline {ns.deadline:g} s",
             f"{success:.2f}", fmt(percentile(lat, 50)), fmt(percentile(lat, 99)),
             "never" if opened_at is None else opened_at, state, primary_calls,
             " ".join(f"{k}:{v}" for k, v in sorted(result["codes"].items())) or "-",
             fmt(result["elapsed"], 1)]]
    print(table(["run", "success %", "p50 ms", "p99 ms", "breaker open at call",
                 "breaker at end", "calls to primary", "errors", "wall s"], rows,
                title="Hanging primary (simulator timeout, provider timeout_s 60) → "
                      "healthy fallback"))
    verdict = success >= SUCCESS_TARGET and opened_at is not None and opened_at < BREAKER_TARGET
    print(f"\ntargets: ≥ {SUCCESS_TARGET} % succeed, breaker open within the first "
          f"{BREAKER_TARGET} calls: {'PASS' if verdict else 'MISS'}")


if __name__ == "__main__":
    main()
