"""Usage records: one row per Generate/StreamGenerate call, written off the hot path.

Calls hand a ``UsageRecord`` to the recorder and go on; a background task writes what
has queued up in one multi-row INSERT. Money never depends on these rows (the ledger is
the source of truth for what was charged; the record carries the transaction id), so a
crash can lose at most the records of the last moments, never a charge.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

import asyncpg

from server.kernel.db.faults import dependency_fault


@dataclass(frozen=True)
class UsageRecord:
    trace_id: str
    method: str
    service: str
    status: str
    latency_ms: float
    end_user_id: str = ""
    requested_model: str = ""
    provider: str = ""
    model: str = ""
    region: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    attempts: list[dict[str, object]] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    wallet_id: str = ""
    session_id: str = ""
    cost_micros: int = 0
    uncollected_micros: int = 0  # cost the wallet could not pay (the overrun policy)
    currency_code: str = ""
    transaction_id: int | None = None
    prompt_key: str = ""
    prompt_version: int = 0
    bot_config_id: str = ""
    chunk_ids: tuple[str, ...] = ()


_COLUMNS = ("trace_id", "method", "service", "status", "latency_ms", "end_user_id",
            "requested_model", "provider", "model", "region", "input_tokens", "output_tokens",
            "cached_input_tokens", "cache_write_tokens", "attempts", "metadata", "wallet_id",
            "session_id", "cost_micros", "uncollected_micros", "currency_code", "transaction_id", "prompt_key",
            "prompt_version", "bot_config_id", "chunk_ids")


class UsageRecorder:
    """Queues records and writes them in batches from one background task."""

    def __init__(self, pool: asyncpg.Pool, *, max_batch: int = 500, max_queue: int = 100_000,
                 linger_s: float = 0.05, logger: logging.Logger | None = None) -> None:
        self._pool = pool
        self._max_batch = max_batch
        # Wait this long after the first record so a busy gateway writes few large batches
        # (each COPY costs a pool round trip) instead of one small batch per request.
        self._linger_s = linger_s
        self._queue: asyncio.Queue[UsageRecord] = asyncio.Queue(max_queue)
        self._task: asyncio.Task[None] | None = None
        self._log = logger or logging.getLogger("llmgw.usage")
        self.dropped = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="usage-recorder")

    def record(self, record: UsageRecord) -> None:
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self.dropped += 1

    async def stop(self) -> None:
        """Write what is queued, then stop."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        self._task = None
        while not self._queue.empty():
            batch = self._drain()
            try:
                await self._write(batch)
            except Exception as exc:  # noqa: BLE001 - shutting down: report and go on
                self._log.warning("dropped %d usage records at shutdown: %s", len(batch), exc)
                break

    def _drain(self) -> list[UsageRecord]:
        batch = []
        while len(batch) < self._max_batch and not self._queue.empty():
            batch.append(self._queue.get_nowait())
        return batch

    async def _run(self) -> None:
        while True:
            batch: list[UsageRecord] = []
            try:
                batch.append(await self._queue.get())
                if self._linger_s:
                    await asyncio.sleep(self._linger_s)
                batch.extend(self._drain())
                await self._write(batch)
            except asyncio.CancelledError:
                self._requeue(batch)  # stop() writes what is queued
                raise
            except Exception as exc:  # noqa: BLE001 - the recorder must outlive any batch
                if dependency_fault(exc) is None:
                    # Refused for what it holds: retrying it would fail forever.
                    self._log.error("dropped %d usage records the database refused: %s: %s",
                                    len(batch), type(exc).__name__, exc)
                    continue
                # The database is away: keep the records (bounded by max_queue) and retry.
                self._log.warning("usage records wait for the database (%d queued): %s",
                                  len(batch) + self._queue.qsize(), type(exc).__name__)
                self._requeue(batch)
                await asyncio.sleep(1.0)

    def _requeue(self, batch: list[UsageRecord]) -> None:
        for record in batch:
            try:
                self._queue.put_nowait(record)
            except asyncio.QueueFull:
                self.dropped += 1

    async def _write(self, batch: list[UsageRecord]) -> None:
        if not batch:
            return
        rows = []
        for r in batch:
            row = [getattr(r, c) for c in _COLUMNS]
            row[_COLUMNS.index("attempts")] = json.dumps(r.attempts)
            row[_COLUMNS.index("metadata")] = json.dumps(r.metadata)
            row[_COLUMNS.index("chunk_ids")] = list(r.chunk_ids)
            rows.append(row)
        async with self._pool.acquire() as conn:
            await conn.copy_records_to_table("usage_records", records=rows, columns=_COLUMNS)
