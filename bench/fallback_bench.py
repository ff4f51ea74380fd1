"""Fallback benchmark: what failing over costs, against the local simulator (127.0.0.1 only).

  overhead    the primary fails fast (HTTP 503) and the fallback serves: end-to-end
              latency through the gateway vs. the same call served directly by the
              fallback target, with no retry, with one retry (full-jitter backoff), and
              with the primary's circuit breaker open (skipped without a call);
  throughput  requests/s at concurrency 32 when 10 % of requests' primary targets fail
              (503) and fail over, vs. no failures; with and without circuit breakers.

Each configuration runs in its own `llmgw serve` process (retry and breaker settings are
per gateway). Run:

    .venv/bin/python bench/fallback_bench.py            # ~1-2 minutes
    .venv/bin/python bench/fallback_bench.py --quick    # ~40 s
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "bench"), str(ROOT / "generated")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import grpc
import pgserver
from _common import fmt, median, percentile, table
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from simulator.testing import SimulatorProcess
from tests.support.gateway import GatewayProcess, raw_test_config, token

DOWN, UP, BACKUP = "fbb-down", "fbb-up", "fbb-backup"
CONCURRENCY = 32
ROUNDS = 3
NO_BREAKER = {"breaker_consecutive_failures": 1_000_000, "breaker_error_rate": 1.0,
              "breaker_min_calls": 1_000_000}
WITH_BREAKER = {"breaker_consecutive_failures": 5, "breaker_cooldown_s": 10}
RUNS = (("no retry", 1, NO_BREAKER), ("1 retry", 2, NO_BREAKER),
        ("1 retry + breaker", 2, WITH_BREAKER))


def config(sim: SimulatorProcess, data_dir: Path, database_url: str, attempts: int,
           routing: dict[str, Any]) -> dict[str, Any]:
    """The packaged defaults at the simulator; no rate limits (they are not measured)."""
    raw = raw_test_config(sim.base_url, data_dir, database={"url": database_url},
                          rate_limits={"enabled": False}, server={"grace_period_s": 1})
    raw["retry"] = {"max_attempts_per_target": attempts, "base_delay_s": 0.01,
                    "max_delay_s": 0.05}
    raw["routing"] = {**routing, "retry_min_per_s": 1_000_000}
    return raw


def request(*models: str) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        targets=[pb.Target(provider="simulator", model=m) for m in models],
        messages=[pb.Message(role="user", content="Hello")],
        config=pb.GenerationConfig(max_output_tokens=16))


@contextlib.contextmanager
def gateway(raw: dict[str, Any], workdir: Path) -> Iterator[GatewayProcess]:
    """`llmgw serve` in a child process (stopped by its PID); its output is drained so a
    full pipe can never stall it."""
    gw = GatewayProcess(raw, workdir).start(timeout_s=120)
    stream = gw.process.stdout  # type: ignore[union-attr]

    def drain() -> None:
        with contextlib.suppress(OSError, ValueError):
            for _ in stream:  # type: ignore[union-attr]
                pass

    threading.Thread(target=drain, daemon=True).start()
    try:
        yield gw
    finally:
        gw.stop()


async def latencies(target: str, n: int) -> tuple[list[float], list[float]]:
    """``n`` sequential calls of each kind, alternating (so both see the same machine
    load): served directly by the backup, and failing over to it from the down target.
    Latencies in ms."""
    metadata = (("authorization", f"Bearer {token('generate')}"),)
    direct, failover = request(BACKUP), request(DOWN, BACKUP)
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        for _ in range(20):  # warm-up (and, with breakers, opens the down target's)
            await stub.Generate(failover, metadata=metadata, timeout=10)
        out: tuple[list[float], list[float]] = ([], [])
        for _ in range(n):
            for req, times in zip((direct, failover), out, strict=True):
                started = time.perf_counter()
                response = await stub.Generate(req, metadata=metadata, timeout=10)
                times.append((time.perf_counter() - started) * 1000)
                assert response.served_by.model == BACKUP, response.served_by
        return out


async def throughput(target: str, failing_share: float, n: int) -> tuple[float, float]:
    """Requests/s and p95 ms at CONCURRENCY when ``failing_share`` of requests start at
    the down target (then fail over to the backup)."""
    metadata = (("authorization", f"Bearer {token('generate')}"),)
    every = round(1 / failing_share) if failing_share else 0
    reqs = [request(DOWN, BACKUP) if every and i % every == 0 else request(UP, BACKUP)
            for i in range(n)]
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        for _ in range(50):
            await stub.Generate(reqs[1], metadata=metadata, timeout=10)
        pending = iter(reqs)
        times: list[float] = []

        async def worker() -> None:
            for req in pending:
                started = time.perf_counter()
                await stub.Generate(req, metadata=metadata, timeout=10)
                times.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.perf_counter() - started
    return n / elapsed, percentile(times, 95)


def summary(name: str, values: list[float], base: float | None) -> list[object]:
    p50 = percentile(values, 50)
    return [name, fmt(p50), fmt(percentile(values, 95)), fmt(sum(values) / len(values)),
            "-" if base is None else f"{p50 - base:+.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (< 1 minute)")
    ns = parser.parse_args()
    n_latency, n_throughput = (150, 900) if ns.quick else (300, 2400)

    with tempfile.TemporaryDirectory(prefix="fallback-bench-") as tmp, \
            SimulatorProcess() as sim:
        workdir = Path(tmp)
        # Owned by this run: stopped (by pgserver, via its PID) before the directory goes.
        postgres = pgserver.get_server(workdir / "pg", cleanup_mode="stop")
        database_url = postgres.get_uri()
        sim.set_scenario(DOWN, always_status=503)
        rows: list[list[object]] = []
        tput: list[list[object]] = []
        try:
            for label, attempts, routing in RUNS:
                raw = config(sim, workdir, database_url, attempts, routing)
                with gateway(raw, workdir) as gw:
                    # Each gateway is compared with itself: a fresh process on a shared
                    # machine is not comparable to another one.
                    direct, failover = asyncio.run(latencies(gw.target, n_latency))
                    base = percentile(direct, 50)
                    rows.append(summary(f"{label}: fallback served directly", direct, None))
                    rows.append(summary(f"{label}: primary 503 → fallback", failover, base))
                    # Interleaved rounds, median reported: the machine is shared.
                    runs: dict[float, list[tuple[float, float]]] = {0.0: [], 0.1: []}
                    for _ in range(ROUNDS):
                        for share, results in runs.items():
                            results.append(asyncio.run(
                                throughput(gw.target, share, n_throughput // ROUNDS)))
                    for share, results in runs.items():
                        tput.append([label, f"{share:.0%}",
                                     fmt(median(r for r, _ in results), 0),
                                     fmt(median(p for _, p in results))])
        finally:
            postgres.cleanup()

    print(table(["path (unary, sequential)", "p50 ms", "p95 ms", "mean ms", "p50 vs direct"],
                rows, title=f"Fallback overhead ({n_latency} calls each)"))
    print()
    print(table(["gateway", "primaries failing", "req/s", "p95 ms"], tput,
                title=f"Throughput, concurrency {CONCURRENCY} (median of {ROUNDS} interleaved "
                      f"rounds, {n_throughput} calls in all)"))


if __name__ == "__main__":
    main()
