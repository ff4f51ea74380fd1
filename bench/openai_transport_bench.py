"""CPU per upstream call of the OpenAI adapter: ``transport: sdk`` (the official SDK)
against ``transport: direct`` (our own aiohttp session), side by side in one process.

The adapter's CPU is what the gateway pays for the vendor call; this measures it alone
(the simulator runs in its own process and is not counted). Rounds alternate the two
transports; the table shows medians and the direct/sdk ratio.

    .venv/bin/python bench/openai_transport_bench.py [--rounds 5] [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import fmt, load_text, table  # noqa: E402

from server.providers.base import ChatMessage, ProviderRequest  # noqa: E402
from server.providers.openai import OpenAIProvider  # noqa: E402
from simulator.testing import SimulatorProcess  # noqa: E402

CONCURRENCY = 16


async def drive(adapter: OpenAIProvider, kind: str, calls: int) -> float:
    """CPU ms per call for ``calls`` calls at CONCURRENCY."""
    request = ProviderRequest(model=f"bench-{kind}", messages=(ChatMessage("user", "Hello"),))
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            if kind == "unary":
                await adapter.generate(request, 10)
            else:
                async for _ in adapter.stream(request, 10):
                    pass

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return (time.process_time() - started) * 1000 / calls


async def run(sim: SimulatorProcess, rounds: int, calls: int) -> list[list[object]]:
    adapters = {t: OpenAIProvider(t, base_url=sim.openai_base_url, api_key=sim.api_key,
                                  timeout_s=10, max_connections=100, transport=t)
                for t in ("sdk", "direct")}
    cpu: dict[tuple[str, str], list[float]] = {}
    try:
        for adapter in adapters.values():  # warm-up: imports, connections
            await drive(adapter, "unary", 50)
            await drive(adapter, "stream", 20)
        for r in range(rounds):
            order = list(adapters) if r % 2 == 0 else list(reversed(adapters))
            for kind, n in (("unary", calls), ("stream", calls // 4)):
                for transport in order:
                    cpu.setdefault((kind, transport), []).append(
                        await drive(adapters[transport], kind, n))
    finally:
        for adapter in adapters.values():
            await adapter.aclose()
    rows: list[list[object]] = []
    for kind in ("unary", "stream"):
        sdk = statistics.median(cpu[kind, "sdk"])
        direct = statistics.median(cpu[kind, "direct"])
        rows.append([kind, fmt(sdk, 3), fmt(direct, 3), fmt(direct / sdk, 2),
                     " ".join(fmt(x, 3) for x in cpu[kind, "sdk"]),
                     " ".join(fmt(x, 3) for x in cpu[kind, "direct"])])
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=2000, help="unary calls per phase "
                        "(streams: a quarter)")
    args = parser.parse_args(argv)
    load = load_text()
    with SimulatorProcess() as sim:
        sim.set_scenario("bench-unary", latency_ms=0, reply_tokens=12)
        sim.set_scenario("bench-stream", latency_ms=0, reply_tokens=64)
        import uvloop

        rows = uvloop.run(run(sim, args.rounds, args.calls))
    print(f"machine: {load}; concurrency {CONCURRENCY}; simulator at zero latency")
    print(table(["call", "sdk CPU ms/call", "direct CPU ms/call", "direct/sdk",
                 "sdk rounds", "direct rounds"], rows, align_left=1,
                title=f"OPENAI ADAPTER CPU PER CALL (median of {args.rounds} alternating "
                      "rounds; stream = 64 tokens)"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
