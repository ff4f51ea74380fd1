"""Shared fixtures: real Postgres (pgserver), real Redis, the vendor simulator, gateways.

Session-scoped where starting the part is slow; every test that scripts the simulator
uses its own model name, so tests do not see each other's scenarios.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from server.kernel.db.embedded import start_embedded
from server.kernel.db.migrate import upgrade
from simulator.testing import SimulatorProcess
from tests.support.gateway import ROOT, RunningGateway, raw_test_config, running_gateway
from tests.support.redis_process import RedisProcess

logging.getLogger("pgserver").setLevel(logging.WARNING)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("llmgw-data")


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A real PostgreSQL 16 with pgvector (embedded via pgserver), migrated to heads.

    Its folder lives outside pytest's private tmp tree: pgserver runs Postgres as an
    unprivileged user when we are root, and that user must be able to reach the folder.
    With DATABASE_URL set, that server is used instead (e.g. an external pgvector >= 0.8).
    """
    if os.environ.get("DATABASE_URL"):
        upgrade(os.environ["DATABASE_URL"])
        yield os.environ["DATABASE_URL"]
        return
    folder = Path(tempfile.mkdtemp(prefix="llmgw-test-pg-"))
    folder.chmod(0o755)
    url = start_embedded(folder, cleanup="delete")
    upgrade(url)
    yield url
    assert_ledger_consistent(url)


def assert_ledger_consistent(url: str) -> None:
    """`llmgw ledger check` after every test that moved money: the whole suite's books
    must still balance (a failure here is an error of the last test using the database)."""
    result = subprocess.run([sys.executable, "-m", "server.cli", "ledger", "check"],
                            cwd=ROOT, env={**os.environ, "DATABASE_URL": url,
                                           "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"ledger check failed after the suite:\n{result.stdout}"


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorProcess]:
    with SimulatorProcess() as sim:
        yield sim


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisProcess]:
    with RedisProcess() as redis:
        yield redis


@pytest.fixture(scope="session")
async def gateway(simulator: SimulatorProcess, pg_url: str,
                  data_dir: Path) -> AsyncIterator[RunningGateway]:
    """The gateway with the packaged defaults, pointed at the test simulator."""
    async with running_gateway(raw_test_config(simulator.base_url, data_dir), pg_url) as gw:
        yield gw


@pytest.fixture(scope="session")
async def channel(gateway: RunningGateway) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(gateway.target) as ch:
        yield ch
