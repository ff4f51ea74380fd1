"""Group commit for the ledger: many concurrent operations, one statement per batch.

Why: a money movement must hold its wallet's row lock from the balance check to the
commit. When each charge is its own transaction driven from Python, the lock is held over
several network round trips and a WAL flush, so a hot wallet (and the per-currency revenue
account every charge credits) manages only a few hundred charges per second, with most
connections queued on the lock. Here each process funnels its operations through a few
writer tasks; a writer takes everything queued (up to ``max_batch``) and applies it with
one call of the ``ledger_apply`` stored function: one round trip, one lock acquisition per
account, one commit for the whole batch. Each operation still succeeds or fails on its
own, in submission order, and exactness is the database's job (row locks taken in one
global order inside the function), so any number of processes can write at once.

When the database goes away (shutdown, restart, failover) a batch's callers are answered
UNAVAILABLE, whatever the moment: before the statement nothing happened; during it,
including its commit, all or nothing happened and the caller cannot know which — a retry
with the same idempotency key applies it or replays it, so either way it lands once. A
batch whose results came back has committed and is answered with them, even if returning
the connection to the pool fails afterwards.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import asyncpg

from server.billing.operations import Operation, Result, Status
from server.kernel.db.faults import dependency_fault, dependency_unavailable
from server.kernel.errors import Fault, GatewayError

_APPLY = ("SELECT idx, status, transaction_id, amount, balance_after, held, replayed "
          "FROM ledger_apply($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], "
          "$6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::bigint[])")
_RETRYABLE = (asyncpg.exceptions.DeadlockDetectedError,
              asyncpg.exceptions.SerializationError)


def unavailable(what: str) -> GatewayError:
    return dependency_unavailable("the ledger", what)


async def apply_batch(conn: asyncpg.Connection, ops: Sequence[Operation]) -> list[Result]:
    """Apply ``ops`` in order in one statement (one transaction); one result per op."""
    rows = await conn.fetch(
        _APPLY,
        [o.kind.value for o in ops], [o.scope for o in ops], [o.key for o in ops],
        [o.body_hash for o in ops], [o.wallet_id for o in ops], [o.amount for o in ops],
        [o.ref for o in ops], [o.currency_code for o in ops], [o.description for o in ops],
        [o.ttl_ms for o in ops])
    results: list[Result | None] = [None] * len(ops)
    for row in rows:
        results[row["idx"] - 1] = Result(
            Status(row["status"]), row["transaction_id"], row["amount"] or 0,
            row["balance_after"] or 0, row["held"] or 0, row["replayed"])
    assert all(r is not None for r in results), "ledger_apply skipped an operation"
    return results  # type: ignore[return-value]


def _retrieve(future: asyncio.Future[Result]) -> None:
    if not future.cancelled():
        future.exception()


class LedgerWriter:
    """Batches operations from many coroutines into few ``ledger_apply`` calls."""

    def __init__(self, pool: asyncpg.Pool, *, writers: int = 2, max_batch: int = 256,
                 max_retries: int = 5, logger: logging.Logger | None = None,
                 on_batch: Callable[[Sequence[Operation], Sequence[Result]], None] | None = None,
                 ) -> None:
        self._pool = pool
        self._on_batch = on_batch  # metrics hook: called with each applied batch
        self._writers = writers
        self._max_batch = max_batch
        self._max_retries = max_retries
        self._log = logger or logging.getLogger("llmgw.billing")
        self._queue: asyncio.Queue[tuple[Operation, asyncio.Future[Result]]] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.batches = 0
        self.operations = 0

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._run(), name=f"ledger-writer-{i}")
                       for i in range(self._writers)]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        while not self._queue.empty():
            _, future = self._queue.get_nowait()
            if not future.done():
                future.set_exception(unavailable("shutting down"))

    async def submit(self, op: Operation) -> Result:
        """Queue ``op`` and wait for its result. A caller that is cancelled does not
        withdraw the operation: it may still be applied, which is safe because a retry
        with the same idempotency key replays it."""
        if not self._tasks:
            raise unavailable("the ledger writer is not running")
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)  # a cancelled caller leaves nobody to read it
        self._queue.put_nowait((op, future))
        return await asyncio.shield(future)

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._apply_and_resolve(batch)
            except asyncio.CancelledError:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(unavailable("shutting down"))
                raise

    async def _apply_and_resolve(
            self, batch: list[tuple[Operation, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._apply([op for op, _ in batch])
        except Exception as exc:  # noqa: BLE001 - a failure must fail its callers, not the writer
            await self._failed(batch, exc)
            return
        self.batches += 1
        self.operations += len(batch)
        if self._on_batch is not None:
            self._on_batch([op for op, _ in batch], results)
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result(result)

    async def _failed(self, batch: list[tuple[Operation, asyncio.Future[Result]]],
                      exc: Exception) -> None:
        """Answer the callers of a batch that raised ``exc``."""
        if isinstance(exc, GatewayError):
            self._fail(batch, exc)
            return
        outage = dependency_fault(exc)
        if outage is not None:
            # Not the operations' fault: applying them one by one would only fail each
            # again (or, with the database back, split a batch for nothing).
            self._log.warning("ledger batch of %d answered UNAVAILABLE: the database is "
                              "unavailable (%s: %s)", len(batch), type(exc).__name__, exc)
            self._fail(batch, outage)
            return
        if isinstance(exc, asyncpg.PostgresError) and len(batch) > 1:
            # One operation broke the statement (a bug, never a business rule: those are
            # statuses). Apply them one by one so only the culprit fails.
            self._log.error("ledger batch failed; retrying its operations one by one",
                            exc_info=exc)
            for item in batch:
                await self._apply_and_resolve([item])
            return
        self._log.error("ledger operation failed", exc_info=exc)
        self._fail(batch, GatewayError(Fault.BUG, "INTERNAL",
                                       "the ledger failed to apply the operation"))

    @staticmethod
    def _fail(batch: list[tuple[Operation, asyncio.Future[Result]]], error: Exception) -> None:
        for _, future in batch:
            if not future.done():
                future.set_exception(error)

    async def _apply(self, ops: list[Operation]) -> list[Result]:
        for attempt in range(self._max_retries + 1):
            conn = await self._pool.acquire()
            try:
                return await apply_batch(conn, ops)
            except _RETRYABLE:
                # The whole statement rolled back; nothing happened, so running it again is
                # exact. (Locks are taken in one order, so this is a safety net.)
                if attempt == self._max_retries:
                    raise
            finally:
                await self._release(conn)
            await asyncio.sleep(0.001 * 2 ** attempt)
        raise AssertionError("unreachable")

    async def _release(self, conn: asyncpg.pool.PoolConnectionProxy) -> None:
        """Return ``conn`` to the pool. The batch's outcome is already decided (committed
        with results in hand, or failed): a connection the server dropped meanwhile fails
        its reset here, and that must not replace the outcome. asyncpg terminates such a
        connection itself, and the pool opens a fresh one on the next acquire."""
        try:
            await self._pool.release(conn)
        except Exception as exc:  # noqa: BLE001 - logged; the outcome stands
            self._log.warning("could not return a ledger connection to the pool: %s: %s",
                              type(exc).__name__, exc)
