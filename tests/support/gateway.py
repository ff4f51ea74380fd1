"""Run real gateways for tests: in-process (same event loop) or as `llmgw serve` processes.

In-process servers are cheap and let a test read the server's metrics registry; separate
processes are what multi-process behaviour (shared Redis limits, SIGTERM draining) needs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import grpc
import yaml
from prometheus_client import CollectorRegistry

from server.app import Gateway
from server.auth.tokens import mint_token
from server.kernel.config import DEFAULT_CONFIG, GatewayConfig

ROOT = Path(__file__).resolve().parents[2]
TEST_SECRET = "test-secret-for-the-llm-gateway-suite-0123456789"
ISSUER, AUDIENCE = "llm-gateway-dev", "llm-gateway"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, Mapping) and isinstance(
            out.get(key), dict) else value
    return out


DEMO_SIMULATOR = "http://127.0.0.1:8900"


def point_at_simulator(raw: dict[str, Any], simulator_url: str) -> dict[str, Any]:
    """Every packaged provider served by the demo simulator (port 8900: OpenAI-compatible,
    Anthropic, Gemini, Bedrock, Byteplus) pointed at the test's simulator instead."""
    for provider in raw["providers"].values():
        for key in ("base_url", "endpoint_url"):
            if str(provider.get(key) or "").startswith(DEMO_SIMULATOR):
                provider[key] = simulator_url + provider[key][len(DEMO_SIMULATOR):]
    return raw


def raw_test_config(simulator_url: str, data_dir: Path, **overrides: Any) -> dict[str, Any]:
    """The packaged defaults, pointed at the test simulator, plus ``overrides``."""
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    point_at_simulator(raw, simulator_url)
    raw["providers"]["dead"] = {"kind": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
                                "requires_api_key": False, "timeout_s": 2}
    raw["data_dir"] = str(data_dir)
    raw["logging"] = {"level": "WARNING", "json_format": True}
    raw["retry"] = {"base_delay_s": 0.01, "max_delay_s": 0.05}
    raw["auth"]["dev_secret"] = False
    return merge(raw, overrides)


def token(*scopes: str, subject: str = "test-service", ttl_s: int = 600,
          secret: str = TEST_SECRET, claims: Mapping[str, Any] | None = None) -> str:
    """A test token; ``claims`` are added to (or override) the standard ones, e.g.
    ``{"tenant": "acme"}``."""
    return mint_token(key=secret, subject=subject, scopes=scopes or ("generate",),
                      issuer=ISSUER, audience=AUDIENCE, ttl_s=ttl_s, extra_claims=claims)


def bearer(*scopes: str, **kw: Any) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token(*scopes, **kw)}"),)


@dataclass
class RunningGateway:
    gateway: Gateway
    port: int
    registry: CollectorRegistry

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def metric(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        return self.registry.get_sample_value(name, dict(labels or {})) or 0.0


@contextlib.asynccontextmanager
async def running_gateway(raw: dict[str, Any], database_url: str) -> AsyncIterator[RunningGateway]:
    config = GatewayConfig.model_validate(raw)
    registry = CollectorRegistry()
    gateway = Gateway(config, database_url=database_url, registry=registry,
                      environ={"LLMGW_JWT_SECRET": TEST_SECRET})
    port = await gateway.start("127.0.0.1", 0)
    try:
        yield RunningGateway(gateway, port, registry)
    finally:
        await gateway.stop(grace_s=1)


class GatewayProcess:
    """`llmgw serve` as a child process with its own config file and metrics port."""

    def __init__(self, raw: dict[str, Any], workdir: Path, *, port: int | None = None,
                 env: Mapping[str, str] | None = None, workers: int = 1) -> None:
        self.port = port or free_port()
        self.metrics_port = free_port()
        self._config_file = workdir / f"gateway-{self.port}-{time.monotonic_ns()}.yaml"
        self._config_file.write_text(yaml.safe_dump(raw))
        self._env = {**os.environ, "LLMGW_JWT_SECRET": TEST_SECRET, "PYTHONPATH": str(ROOT),
                     **(env or {})}
        self._workers = workers
        self.process: subprocess.Popen[str] | None = None
        self.output = ""

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> GatewayProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--config", str(self._config_file),
             "--port", str(self.port), "--metrics-port", str(self.metrics_port),
             "--workers", str(self._workers)],
            cwd=ROOT, env=self._env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.process.stdout.read()}")  # type: ignore[union-attr]
            try:
                channel = grpc.insecure_channel(self.target)
                grpc.channel_ready_future(channel).result(timeout=0.5)
                channel.close()
                return self
            except grpc.FutureTimeoutError:
                continue
        self.stop()
        raise RuntimeError("gateway did not start in time")

    def metrics_text(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                    timeout=5) as response:
            return response.read().decode()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        if self.process.stdout:
            self.output = self.process.stdout.read()
        return code

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
