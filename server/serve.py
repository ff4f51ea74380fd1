"""Run the gateway: one process, or a supervisor with N worker processes.

One Python process uses one core, so ``--workers N`` starts N processes that share the
port through SO_REUSEPORT (the kernel spreads connections). The supervisor prepares the
database once (embedded start-up, migrations), serves the aggregated metrics
(prometheus_client multiprocess mode) and forwards SIGTERM/SIGINT so every worker drains
(and SIGHUP, with TLS on, so every worker re-reads its certificate files).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, start_http_server

from server.kernel.config import GatewayConfig
from server.kernel.db.embedded import start_embedded
from server.kernel.db.migrate import migrate_to_heads

log = logging.getLogger("llmgw.serve")


def prepare_database(config: GatewayConfig, *, isolated_migrations: bool = False) -> str:
    """The database URL to use (starting the embedded server if none is configured),
    migrated when the configuration asks for it. ``isolated_migrations``: a pending
    migration runs in a child process, so a long-lived server never imports Alembic."""
    url = config.database.url or start_embedded(config.data_dir)
    if config.database.migrate_on_start:
        migrate_to_heads(url, isolated=isolated_migrations)
    return url


def _event_loop_runner() -> asyncio.Runner:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux/macOS
        return asyncio.Runner()
    return asyncio.Runner(loop_factory=uvloop.new_event_loop)


async def _serve(config: GatewayConfig, database_url: str,
                 registry: CollectorRegistry | None) -> None:
    from server.app import Gateway  # imported after PROMETHEUS_MULTIPROC_DIR is settled

    gateway = Gateway(config, database_url=database_url, registry=registry)
    port = await gateway.start(config.server.host, config.server.port)
    print(f"llmgw listening on {config.server.host}:{port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if gateway.tls is not None:  # SIGHUP: re-read the TLS files before the next handshake
        loop.add_signal_handler(signal.SIGHUP, gateway.tls.request_reload)
    await stop.wait()
    log.info("draining", extra={"grace_s": config.server.grace_period_s})
    await gateway.stop()


def serve_single(config: GatewayConfig) -> None:
    """One process: database, metrics endpoint and the gRPC server."""
    database_url = prepare_database(config, isolated_migrations=True)
    registry = CollectorRegistry()
    start_http_server(config.server.metrics_port, config.server.metrics_host, registry=registry)
    with _event_loop_runner() as runner:
        runner.run(_serve(config, database_url, registry))


def serve_worker(config: GatewayConfig) -> None:
    """A worker under the supervisor: no metrics port of its own (the supervisor's
    aggregates the multiprocess files), database prepared already."""
    if not config.database.url:
        raise SystemExit("worker started without DATABASE_URL")
    with _event_loop_runner() as runner:
        runner.run(_serve(config, config.database.url, CollectorRegistry()))


def serve_workers(config: GatewayConfig, workers: int, config_path: Path | None) -> None:
    """The supervisor: prepare, start N workers, aggregate metrics, forward signals."""
    if config.server.port == 0:
        raise SystemExit("--workers needs a fixed --port (the workers share it)")
    database_url = prepare_database(config, isolated_migrations=True)
    metrics_dir = tempfile.mkdtemp(prefix="llmgw-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    from prometheus_client import multiprocess

    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    start_http_server(config.server.metrics_port, config.server.metrics_host, registry=registry)
    env = {**os.environ, "DATABASE_URL": database_url, "PROMETHEUS_MULTIPROC_DIR": metrics_dir,
           "LLMGW_DATABASE__MIGRATE_ON_START": "false"}
    argv = [sys.executable, "-m", "server.cli", "serve", "--worker",
            "--host", config.server.host, "--port", str(config.server.port)]
    if config_path:
        argv += ["--config", str(config_path)]
    children = [subprocess.Popen(argv, env=env) for _ in range(workers)]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    if config.server.tls is not None:  # each worker re-reads its own TLS files
        signal.signal(signal.SIGHUP, forward)
    codes = [child.wait() for child in children]
    if any(codes):
        raise SystemExit(f"worker exit codes: {codes}")


def start_simulator_process(base_url: str | None) -> subprocess.Popen[str]:
    """Start the vendor simulator (a separate process) on the port of ``base_url``."""
    parts = urlsplit(base_url or "http://127.0.0.1:8900/v1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulator", "--host", parts.hostname or "127.0.0.1",
         "--port", str(parts.port or 8900)],
        stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline() if proc.stdout else ""
    if "listening" not in line:
        proc.kill()
        raise SystemExit(f"the simulator did not start (port {parts.port} busy?)")
    print(line.strip(), flush=True)
    return proc
