"""Stream batching: the gateway's CPU per relayed token at several ``stream_batch_ms``.

One run, interleaved: one mock upstream (``../shared/peers/mock_upstream.py``, pinned to
the client core, ``--tokens`` per stream, 5 ms between tokens for the ``mock-itl5``
model) and one gateway per window value, all pinned to the gateway core, each with the
config side_by_side uses (the checkout's defaults + provider ``mock``, rate limits raised)
and that provider's ``stream_batch_ms`` set. Then, round after round, the peers'
``grpc_load.py`` drives the scenario (default ``st_itl5_c32``: 32 concurrent streams) at
each gateway in turn; a gateway only uses CPU while it is driven, so every figure comes
from the same stretch of machine time as its neighbours. Printed: the median over
rounds of gateway CPU per stream and per token, streams per second and the client's
time to first token and whole-stream time (p50).

    .venv/bin/python bench/stream_batch_bench.py [--windows 0,20] [--tokens 20] \
        [--rounds 3] [--seconds 8] [--scenario st_itl5_c32]

Needs what ``../shared/peers/side_by_side`` installs (``/tmp/grpcperf-venv``,
``/tmp/bench-venv``): run that once first. 127.0.0.1 only, every phase bounded.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from _common import table

PEERS = Path(os.environ.get("PEERS_DIR", ROOT.parent / "shared" / "peers"))
GRPC_VENV = Path(os.environ.get("GRPCPERF_VENV", "/tmp/grpcperf-venv"))
BENCH_VENV = Path(os.environ.get("BENCH_VENV", "/tmp/bench-venv"))
GW_CPU, CLIENT_CPU = "0", "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes], seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if process.poll() is not None:
            raise SystemExit(f"process {process.pid} exited before opening :{port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"nothing listens on :{port} after {seconds:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM what we started (the gateway stops its embedded Postgres), then SIGKILL."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def gateway_config(work: Path, mock_url: str, window_ms: float) -> Path:
    base = work / "base.yaml"
    subprocess.run([sys.executable, str(PEERS / "side_by_side.py"), "config",
                    str(ROOT / "server/defaults/gateway.yaml"), str(base), mock_url],
                   check=True, capture_output=True)
    config = yaml.safe_load(base.read_text())
    config["providers"]["mock"]["stream_batch_ms"] = window_ms
    path = work / f"gw-{window_ms:g}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Gateway:
    """One ``llmgw serve`` on the gateway core, with its own embedded Postgres."""

    def __init__(self, work: Path, config: Path, window_ms: float) -> None:
        self.window_ms = window_ms
        self.port = free_port()
        data = work / f"data-{window_ms:g}"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("LLMGW_") and k not in ("DATABASE_URL", "REDIS_URL")}
        env["LLMGW_DATA_DIR"] = str(data)
        self.env = env
        self.config = config
        self.log = (work / f"gw-{window_ms:g}.log").open("wb")
        self.process = subprocess.Popen(
            ["taskset", "-c", GW_CPU, str(ROOT / ".venv/bin/llmgw"), "serve", "--config",
             str(config), "--port", str(self.port), "--metrics-port", str(free_port())],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def token(self) -> str:
        out = subprocess.run([str(ROOT / ".venv/bin/llmgw"), "token", "--config",
                              str(self.config), "--sub", "perf", "--scope", "generate",
                              "--ttl", "86400"], cwd=ROOT, env=self.env, check=True,
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip().splitlines()[-1]


def drive(gateway: Gateway, token: str, mock_pid: int, scenario: str, seconds: float,
          out: Path) -> dict:
    """One grpc_load.py run of ``scenario`` against ``gateway``; its result row."""
    out.unlink(missing_ok=True)
    subprocess.run([str(GRPC_VENV / "bin/python"), str(PEERS / "grpc_load.py"),
                    "--target", f"127.0.0.1:{gateway.port}", "--token", token,
                    "--pid", str(gateway.process.pid), "--mock-pid", str(mock_pid),
                    "--client-cpus", CLIENT_CPU, "--only", scenario, "--seconds", str(seconds),
                    "--warmup", "1", "--repeats", "1", "--name", f"w{gateway.window_ms:g}",
                    "--py", str(BENCH_VENV / "bin/python"), "--out", str(out)],
                   check=True, capture_output=True, timeout=seconds * 4 + 120)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    return next(r for r in rows if r.get("scenario") == scenario)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", default="0,20", help="stream_batch_ms values, comma list")
    parser.add_argument("--tokens", type=int, default=20, help="tokens per mock stream")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--scenario", default="st_itl5_c32")
    ns = parser.parse_args()
    for tool in (GRPC_VENV / "bin/python", BENCH_VENV / "bin/python", PEERS / "grpc_load.py"):
        if not tool.exists():
            raise SystemExit(f"missing {tool}: run ../shared/peers/side_by_side once first")
    windows = [float(w) for w in ns.windows.split(",")]
    work = Path(tempfile.mkdtemp(prefix="stream-batch-"))
    mock_port = free_port()
    mock = subprocess.Popen(["taskset", "-c", CLIENT_CPU, str(BENCH_VENV / "bin/python"),
                             str(PEERS / "mock_upstream.py"), "--port", str(mock_port),
                             "--tokens", str(ns.tokens)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateways: list[Gateway] = []
    try:
        wait_port(mock_port, mock, 30)
        url = f"http://127.0.0.1:{mock_port}/v1"
        gateways = [Gateway(work, gateway_config(work, url, w), w) for w in windows]
        for g in gateways:
            wait_port(g.port, g.process, 180)
        tokens = {g.window_ms: g.token() for g in gateways}
        results: dict[float, list[dict]] = {g.window_ms: [] for g in gateways}
        for r in range(ns.rounds):
            order = gateways[r % len(gateways):] + gateways[:r % len(gateways)]
            for g in order:
                row = drive(g, tokens[g.window_ms], mock.pid, ns.scenario, ns.seconds,
                            work / "results.jsonl")
                results[g.window_ms].append(row)
                print(f"  round {r + 1} stream_batch_ms={g.window_ms:g}: "
                      f"{row['resources']['sut_cpu_ms_per_req']:.3f} ms CPU/stream, "
                      f"foreign {row['resources']['foreign_cpu_cores']:.2f} cores",
                      file=sys.stderr)
        rows = []
        for w, runs in results.items():
            cpu = statistics.median(x["resources"]["sut_cpu_ms_per_req"] for x in runs)
            rows.append([f"{w:g}", f"{cpu:.3f}", f"{cpu * 1000 / ns.tokens:.0f}",
                         f"{statistics.median(x['result']['rps'] for x in runs):.0f}",
                         f"{statistics.median(x['result'].get('ttft_p50_us', 0) for x in runs) / 1000:.1f}",
                         f"{statistics.median(x['result'].get('total_p50_us', 0) for x in runs) / 1000:.1f}",
                         f"{max(x['resources']['foreign_cpu_cores'] for x in runs):.2f}"])
        print(f"{ns.scenario}, {ns.tokens} tokens per stream, {ns.rounds} interleaved rounds "
              f"of {ns.seconds:g} s (medians)")
        print(table(["stream_batch_ms", "CPU ms/stream", "CPU us/token", "streams/s",
                     "TTFT p50 ms", "stream p50 ms", "max foreign cores"], rows))
    finally:
        for g in gateways:
            stop(g.process)
        stop(mock)


if __name__ == "__main__":
    main()
