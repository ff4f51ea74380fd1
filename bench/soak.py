"""Soak benchmark: a hostile caller's distinct names must not grow the gateway.

A real `llmgw serve` process (packaged defaults, in-process rate limiter) at the local
simulator and a throwaway Postgres (pgserver), 127.0.0.1 only, takes ``--requests``
calls at ``--concurrency``: normal ones mixed with hostile-but-valid-shaped ones (random
model and route names, explicit targets with random models and regions, random provider
names, random end users and metadata, bad tokens, some as StreamGenerate). Every
``--every`` requests it prints: requests done, status codes so far, the gateway's RSS
(VmRSS of its process tree, from /proc) and the size of its /metrics page.

Targets: after the first 10 % of requests ("warm"), RSS stays within +20 % of the warm
level, and /metrics stays below 100 KB.

    .venv/bin/python bench/soak.py                      # 200,000 requests, c=32
    .venv/bin/python bench/soak.py --requests 50000     # shorter
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "bench"), str(ROOT / "generated")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import grpc
import pgserver
from _common import fmt, table, tree_pids
from fallback_bench import gateway
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from simulator.testing import SimulatorProcess
from tests.support.gateway import raw_test_config, token

RSS_GROWTH_TARGET = 0.20
METRICS_TARGET_BYTES = 100_000
WARM_SHARE = 0.10
CALLERS = 8  # distinct JWT subjects of the normal traffic


def rss_bytes(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants (a supervisor and its workers, if any)."""
    total = 0
    for p in tree_pids(pid):
        try:
            with open(f"/proc/{p}/status", encoding="ascii") as f:
                total += next(int(line.split()[1]) * 1024 for line in f
                              if line.startswith("VmRSS:"))
        except (OSError, StopIteration):
            continue
    return total


class Traffic:
    """The request mix: (kind, request, metadata, streaming) by index, from one seed."""

    KINDS = ("normal", "normal", "normal", "random_model", "random_target",
             "random_region", "random_provider", "random_route", "bad_token", "stream")

    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._auth = [(("authorization", f"Bearer {token('generate', subject=f'soak-{i}')}"),)
                      for i in range(CALLERS)]

    def _word(self) -> str:
        return f"{self._rng.getrandbits(64):016x}"

    def make(self, i: int) -> tuple[str, pb.GenerateRequest, tuple, bool]:
        kind = self.KINDS[i % len(self.KINDS)]
        word = self._word()
        auth = self._auth[i % CALLERS]
        fields = {
            "messages": [pb.Message(role="user", content=f"hello {word}")],
            "config": pb.GenerationConfig(max_output_tokens=8),
            "end_user_id": f"eu-{word}" if kind != "normal" else f"eu-{i % 50}",
            "metadata": {f"k{word[:6]}": word} if kind != "normal" else {},
        }
        if kind in ("normal", "bad_token"):
            fields["model"] = "sim-fast"
        elif kind == "stream":
            fields["targets"] = [pb.Target(provider="simulator", model=f"sim-fast-{word}")]
        elif kind in ("random_model", "random_route"):
            fields["model"] = f"{kind}-{word}"
        elif kind == "random_target":
            fields["targets"] = [pb.Target(provider="simulator", model=f"m-{word}")]
        elif kind == "random_region":
            fields["targets"] = [pb.Target(provider="simulator", model=f"m-{word}",
                                           region=f"r-{word}")]
        else:  # random_provider
            fields["targets"] = [pb.Target(provider=f"p-{word}", model=f"m-{word}")]
        if kind == "bad_token":
            auth = (("authorization", f"Bearer {word}.{self._word()}.{self._word()}"),)
        return kind, pb.GenerateRequest(**fields), auth, kind == "stream"


async def soak(target: str, pid: int, metrics_text, requests: int, concurrency: int,
               every: int, seed: int) -> list[list[object]]:
    traffic = Traffic(seed)
    codes: Counter[str] = Counter()
    rows: list[list[object]] = []
    done = 0
    started = time.perf_counter()
    pending = iter(range(requests))

    def snapshot() -> None:
        size = len(metrics_text().encode())
        rows.append([done, fmt(time.perf_counter() - started, 1), rss_bytes(pid) // 2**20,
                     size, " ".join(f"{k}:{v}" for k, v in sorted(codes.items()))])
        print(f"  {done:>8} requests  rss {rows[-1][2]} MiB  /metrics {size} B", flush=True)

    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        stream_stub = pb_grpc.GenerationServiceStub(channel)

        async def one(request: pb.GenerateRequest, auth: tuple, streaming: bool) -> None:
            if streaming:
                stream = pb.StreamGenerateRequest(
                    targets=request.targets, messages=request.messages,
                    config=request.config, end_user_id=request.end_user_id,
                    metadata=request.metadata)
                async for _ in stream_stub.StreamGenerate(stream, metadata=auth, timeout=10):
                    pass
            else:
                await stub.Generate(request, metadata=auth, timeout=10)

        async def caller() -> None:
            nonlocal done
            for i in pending:
                _, request, auth, streaming = traffic.make(i)
                try:
                    await one(request, auth, streaming)
                    codes["OK"] += 1
                except grpc.aio.AioRpcError as error:
                    codes[error.code().name] += 1
                done += 1
                if done % every == 0:
                    await asyncio.to_thread(snapshot)

        snapshot()
        await asyncio.gather(*(caller() for _ in range(concurrency)))
    if done % every:
        snapshot()
    await asyncio.sleep(5)  # idle: what the process keeps once the traffic stops
    snapshot()
    rows[-1][1] = f"{rows[-1][1]} (idle 5 s)"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--every", type=int, default=0,
                        help="print a row every N requests (default: requests / 20)")
    parser.add_argument("--seed", type=int, default=1)
    ns = parser.parse_args()
    every = ns.every or max(1, ns.requests // 20)

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp, SimulatorProcess() as sim:
        workdir = Path(tmp)
        postgres = pgserver.get_server(workdir / "pg", cleanup_mode="stop")
        try:
            raw = raw_test_config(sim.base_url, workdir, database={"url": postgres.get_uri()},
                                  server={"grace_period_s": 1})
            with gateway(raw, workdir) as gw:
                rows = asyncio.run(soak(gw.target, gw.process.pid, gw.metrics_text,
                                        ns.requests, ns.concurrency, every, ns.seed))
        finally:
            postgres.cleanup()

    print()
    print(table(["requests", "elapsed s", "RSS MiB", "/metrics B", "status codes so far"],
                rows, title=f"Soak: {ns.requests:,} requests, c={ns.concurrency}, "
                            f"{len(Traffic.KINDS) - 3}/{len(Traffic.KINDS)} hostile",
                align_left=0))
    warm_at = ns.requests * WARM_SHARE
    warm = next((r[2] for r in rows if r[0] >= warm_at), rows[-1][2])
    peak = max(r[2] for r in rows if r[0] >= warm_at)
    biggest = max(r[3] for r in rows)
    ok = peak <= warm * (1 + RSS_GROWTH_TARGET) and biggest < METRICS_TARGET_BYTES
    print(f"\nwarm RSS {warm} MiB (at {warm_at:,.0f} requests), peak after {peak} MiB "
          f"(+{100 * (peak - warm) / warm:.1f} %), largest /metrics {biggest:,} B")
    print(f"targets: RSS within +{RSS_GROWTH_TARGET:.0%} of warm, /metrics < "
          f"{METRICS_TARGET_BYTES:,} B: {'PASS' if ok else 'MISS'}")


if __name__ == "__main__":
    main()
