"""Everything billing needs in one gateway process, built from a database URL and closed
in reverse order: the asyncpg pool, the batching writer, the ledger and the hold sweeper.

The ledger talks to Postgres through asyncpg directly (not SQLAlchemy): its hot path is a
single prepared statement per batch, and every microsecond spent in a driver layer is
spent while callers wait.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from server.billing.budgets import Budgets
from server.billing.ledger import Ledger
from server.billing.metering import CallBilling
from server.billing.operations import Operation, Result
from server.billing.pricing import PriceList
from server.billing.sweeper import HoldSweeper
from server.billing.usage import UsageRecorder
from server.billing.writer import LedgerWriter


@dataclass(frozen=True)
class BillingSettings:
    pool_size: int = 8
    writers: int = 2
    max_batch: int = 256
    hold_ttl_s: float = 60.0
    sweep_interval_s: float = 5.0
    hold_output_tokens: int = 4096


def asyncpg_url(url: str) -> str:
    """asyncpg wants ``postgresql://``; accept the SQLAlchemy spelling too."""
    scheme = urlsplit(url).scheme
    return "postgresql" + url[len(scheme):] if scheme.startswith("postgres") else url


class BillingRuntime:
    """Built synchronously (so handlers can be wired in a constructor); ``start`` opens
    the pool and starts the writers and the sweeper."""

    def __init__(self, url: str, prices: PriceList, settings: BillingSettings,
                 on_batch: Callable[[Sequence[Operation], Sequence[Result]], None] | None = None,
                 ) -> None:
        self.settings = settings
        # Not awaited here: asyncpg pools are created first and initialised by ``start``.
        # min_size=0: the gateway starts (NOT_SERVING) while the database is unreachable.
        self.pool: asyncpg.Pool = asyncpg.create_pool(asyncpg_url(url), min_size=0,
                                                      max_size=settings.pool_size)
        self.writer = LedgerWriter(self.pool, writers=settings.writers,
                                   max_batch=settings.max_batch, on_batch=on_batch)
        self.ledger = Ledger(self.pool, self.writer, prices)
        self._sweeper = HoldSweeper(self.ledger, settings.sweep_interval_s)
        self.budgets = Budgets(self.pool)
        self.calls = CallBilling(self.ledger, self.budgets, settings.hold_ttl_s,
                                 settings.hold_output_tokens)
        self.recorder = UsageRecorder(self.pool)
        self._started = False

    async def start(self, *, sweep: bool = True) -> Ledger:
        await self.pool
        self.writer.start()
        await self.recorder.start()
        if sweep:
            self._sweeper.start()
        self._started = True
        return self.ledger

    async def stop(self) -> None:
        if not self._started:
            return
        await self._sweeper.stop()
        await self.writer.stop()
        await self.recorder.stop()
        await self.pool.close()
        self._started = False


def metrics_hook(operations_total: Any, batch_size: Any) -> Callable[
        [Sequence[Operation], Sequence[Result]], None]:
    """Count each batch into Prometheus metrics (``Metrics.ledger_operations`` and
    ``Metrics.ledger_batch_size``), without the ledger knowing about Prometheus."""

    def observe(ops: Sequence[Operation], results: Sequence[Result]) -> None:
        batch_size.observe(len(ops))
        for op, result in zip(ops, results):
            operations_total.labels(op.kind.value, result.status.value).inc()

    return observe
