"""Concurrent streams benchmark: many StreamGenerate calls at once through one provider,
against the local simulator (127.0.0.1 only).

The simulator model answers with a scripted time to first token (``--ttft-ms``, default
200) and then ``--tokens`` tokens at ``--tok-s`` tokens/s, so every stream holds its
upstream connection for a while. Each wave starts ``--streams`` calls at once (default
1,000) and waits for all of them:

  upstream  plain httpx straight to the simulator (an SSE reader, no SDK parsing; a pool
            as large as the wave): the upstream's own TTFT, alone (concurrency 1) and
            at the wave's concurrency;
  gateway   StreamGenerate through `llmgw serve` (one process) → the same model; one run
            per ``--max-connections`` value (the provider's HTTP connection cap,
            providers.<name>.max_connections; "default" = the packaged value).

TTFT = call start → first text. CPU seconds per phase are read from /proc for the gateway
and the simulator, and from the bench client itself: on a small machine all three share
the cores, and the busiest one sets the TTFT. While a wave runs, a thread samples the gateway's RSS
(/proc/PID/status VmRSS) and its llmgw_upstream_in_flight gauge; VmHWM (the kernel's
peak RSS) is read at the end. Targets: gateway TTFT p50 within 2× the upstream's, peak
RSS ≤ 300 MB.

    .venv/bin/python bench/streams_bench.py                       # ~1 minute
    .venv/bin/python bench/streams_bench.py --max-connections default 200
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Self

ROOT = Path(__file__).resolve().parents[1]
for _p in (str(ROOT), str(ROOT / "bench"), str(ROOT / "generated")):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import grpc
import pgserver
from _common import fmt, percentile, process_cpu_seconds, table
from fallback_bench import gateway
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from simulator.testing import SimulatorProcess
from tests.support.gateway import GatewayProcess, raw_test_config, token

MODEL = "sb-stream"
TEXT = re.compile(r'"content":\s*"[^"]')  # an SSE chunk carrying text
WAVES = 2
TTFT_RATIO_TARGET, RSS_TARGET_MB = 2.0, 300


def config(sim: SimulatorProcess, data_dir: Path, database_url: str,
           max_connections: str) -> dict:
    # One bench caller opens every stream: its per-caller stream cap (a protection against
    # one tenant's runaway client, 256 by default) is lifted so the provider path is
    # what gets measured; the server-wide cap still applies.
    raw = raw_test_config(sim.base_url, data_dir, database={"url": database_url},
                          rate_limits={"enabled": False},
                          server={"grace_period_s": 1, "max_streams_per_caller": 1000})
    if max_connections != "default":
        raw["providers"]["simulator"]["max_connections"] = int(max_connections)
    return raw


def proc_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class Sampler:
    """Samples the gateway's RSS and in-flight gauge every ``every_s`` in a thread."""

    def __init__(self, gw: GatewayProcess, every_s: float = 0.1) -> None:
        self._gw, self._every = gw, every_s
        self.rss_kb = 0
        self.in_flight = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pid = self._gw.process.pid  # type: ignore[union-attr]
        while not self._stop.is_set():
            self.rss_kb = max(self.rss_kb, proc_kb(pid, "VmRSS"))
            try:
                found = re.search(r'^llmgw_upstream_in_flight\{[^}]*\}\s+(\S+)',
                                  self._gw.metrics_text(), re.MULTILINE)
            except OSError:
                found = None
            if found:
                self.in_flight = max(self.in_flight, float(found.group(1)))
            self._stop.wait(self._every)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def gateway_wave(stub: pb_grpc.GenerationServiceStub, n: int,
                       ttft: list[float], errors: dict[str, int]) -> None:
    metadata = (("authorization", f"Bearer {token('generate')}"),)
    request = pb.StreamGenerateRequest(
        targets=[pb.Target(provider="simulator", model=MODEL)],
        messages=[pb.Message(role="user", content="Hello")])

    async def one() -> None:
        started = time.perf_counter()
        first = None
        try:
            async for event in stub.StreamGenerate(request, metadata=metadata, timeout=60):
                if first is None and event.WhichOneof("event") == "delta":
                    first = time.perf_counter()
        except grpc.aio.AioRpcError as error:
            errors[error.code().name] = errors.get(error.code().name, 0) + 1
            return
        if first is not None:
            ttft.append((first - started) * 1000)

    await asyncio.gather(*(one() for _ in range(n)))


async def run_gateway(gw: GatewayProcess, n: int) -> tuple[list[float], dict[str, int]]:
    ttft: list[float] = []
    errors: dict[str, int] = {}
    async with grpc.aio.insecure_channel(gw.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        await gateway_wave(stub, 50, [], {})  # warm-up
        for _ in range(WAVES):
            await gateway_wave(stub, n, ttft, errors)
    return ttft, errors


async def run_upstream(sim: SimulatorProcess, n: int, waves: int) -> list[float]:
    import httpx

    body = {"model": MODEL, "messages": [{"role": "user", "content": "Hello"}],
            "stream": True}
    headers = {"authorization": f"Bearer {sim.api_key}"}
    ttft: list[float] = []
    async with httpx.AsyncClient(
            base_url=sim.openai_base_url, headers=headers, timeout=httpx.Timeout(60, connect=10),
            limits=httpx.Limits(max_connections=n, max_keepalive_connections=n)) as http:

        async def one() -> None:
            started = time.perf_counter()
            first = None
            async with http.stream("POST", "/chat/completions", json=body) as response:
                async for line in response.aiter_lines():
                    if first is None and TEXT.search(line):
                        first = time.perf_counter()
            ttft.append(((first or time.perf_counter()) - started) * 1000)

        await asyncio.gather(*(one() for _ in range(min(n, 50))))  # warm-up
        ttft.clear()
        for _ in range(waves):
            await asyncio.gather(*(one() for _ in range(n)))
    return ttft


class Cpu:
    """CPU seconds used by the gateway, the simulator and this client during a phase."""

    def __init__(self, gateway_pid: int | None, simulator_pid: int) -> None:
        self._pids = {"gateway": gateway_pid, "simulator": simulator_pid}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        now = {name: process_cpu_seconds(pid) for name, pid in self._pids.items() if pid}
        return {**now, "client": time.process_time()}

    def __enter__(self) -> Self:
        self._start, self._wall = self._now(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        end, wall = self._now(), time.perf_counter() - self._wall
        self.used = {name: end[name] - self._start[name] for name in end}
        self.wall = wall

    def text(self) -> str:
        """CPU seconds and share of one core per process, e.g. ``gat 7.7 (65%)``."""
        return " ".join(f"{name[:3]} {self.used[name]:.1f} ({self.used[name] / self.wall:.0%})"
                        for name in ("gateway", "simulator", "client") if name in self.used) \
            + f" / {self.wall:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams per wave")
    parser.add_argument("--ttft-ms", type=float, default=200)
    parser.add_argument("--tokens", type=int, default=12)
    parser.add_argument("--tok-s", type=float, default=50, help="upstream tokens per second")
    parser.add_argument("--max-connections", nargs="+", default=["default"],
                        help="provider connection caps to run the gateway with")
    ns = parser.parse_args()

    rows: list[list[object]] = []
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory(prefix="streams-bench-") as tmp, \
            SimulatorProcess() as sim:
        workdir = Path(tmp)
        postgres = pgserver.get_server(workdir / "pg", cleanup_mode="stop")
        try:
            sim.set_scenario(MODEL, latency_ms=ns.ttft_ms, reply_tokens=ns.tokens,
                             tokens_per_second=ns.tok_s)
            sim_pid = sim._proc.pid  # type: ignore[union-attr]
            alone = asyncio.run(run_upstream(sim, 1, 20))
            with Cpu(None, sim_pid) as cpu:
                upstream = asyncio.run(run_upstream(sim, ns.streams, WAVES))
            base_1, base = percentile(alone, 50), percentile(upstream, 50)
            rows.append(["upstream alone (httpx → simulator, c=1)", "-", len(alone),
                         fmt(base_1, 1), fmt(percentile(alone, 99), 1), "1.00",
                         fmt(base_1 / base), "-", "-", "-", "-", "-"])
            rows.append([f"upstream (httpx → simulator, c={ns.streams})", "-", len(upstream),
                         fmt(base, 1), fmt(percentile(upstream, 99), 1), fmt(base / base_1),
                         "1.00", "-", "-", "-", cpu.text(), "-"])
            for cap in ns.max_connections:
                raw = config(sim, workdir, postgres.get_uri(), cap)
                with gateway(raw, workdir) as gw:
                    pid = gw.process.pid  # type: ignore[union-attr]
                    start_kb = proc_kb(pid, "VmRSS")
                    with Sampler(gw) as sampler, Cpu(pid, sim_pid) as cpu:
                        ttft, errors = asyncio.run(run_gateway(gw, ns.streams))
                    peak_kb = max(sampler.rss_kb, proc_kb(pid, "VmHWM"))
                    p50 = percentile(ttft, 50)
                    verdicts.append(
                        f"max_connections {cap}: TTFT p50 {p50 / base_1:.1f}× upstream alone "
                        f"({'PASS' if p50 <= TTFT_RATIO_TARGET * base_1 else 'MISS'}), "
                        f"{p50 / base:.2f}× upstream at c={ns.streams} "
                        f"({'PASS' if p50 <= TTFT_RATIO_TARGET * base else 'MISS'}); RSS peak "
                        f"{peak_kb / 1024:.0f} MB "
                        f"({'PASS' if peak_kb <= RSS_TARGET_MB * 1024 else 'MISS'})")
                    rows.append([f"gateway (max_connections {cap})", cap, len(ttft),
                                 fmt(percentile(ttft, 50), 1), fmt(percentile(ttft, 99), 1),
                                 fmt(percentile(ttft, 50) / base_1),
                                 fmt(percentile(ttft, 50) / base),
                                 f"{start_kb / 1024:.0f}", f"{peak_kb / 1024:.0f}",
                                 f"{sampler.in_flight:.0f}", cpu.text(),
                                 " ".join(f"{k}:{v}" for k, v in sorted(errors.items()))
                                 or "-"])
        finally:
            postgres.cleanup()

    print(table(["path", "max_conn", "streams", "TTFT p50 ms", "TTFT p99 ms",
                 "p50 / up c=1", f"p50 / up c={ns.streams}", "RSS idle MB", "RSS peak MB", "peak in-flight",
                 "CPU s (share of a core) / wall", "errors"],
                rows, title=f"{ns.streams} concurrent streams x {WAVES} waves, upstream TTFT "
                            f"{ns.ttft_ms:g} ms, {ns.tokens} tokens at {ns.tok_s:g} tok/s"))
    print(f"\ntargets: gateway TTFT p50 ≤ {TTFT_RATIO_TARGET:g}× upstream, "
          f"peak RSS ≤ {RSS_TARGET_MB} MB")
    print("\n".join(verdicts))


if __name__ == "__main__":
    main()
