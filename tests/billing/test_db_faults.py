"""Database faults are answered UNAVAILABLE at one boundary, and no charge is lost or doubled.

The classifier (server/kernel/db/faults.py) against real asyncpg and SQLAlchemy failures;
the ledger writer when a batch's connection dies or cannot be returned to the pool; the
usage recorder through a dropped connection; and a real `llmgw serve` process under a Charge load while its own Postgres is restarted (fast
shutdown, then start): every answer is OK or UNAVAILABLE, every OK charge is in the
ledger, every UNAVAILABLE one retried with its key lands exactly once, and the books pass
`llmgw ledger check`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmgateway.v1 import billing_pb2 as pb
from llmgateway.v1 import billing_pb2_grpc as pb_grpc
from llmgateway_client import Backoff, GatewayClient, StaticToken
from sqlalchemy import text

from server.billing.operations import Kind, Operation, request_hash
from server.billing.runtime import asyncpg_url
from server.billing.usage import UsageRecord, UsageRecorder
from server.billing.writer import LedgerWriter
from server.kernel.db.engine import create_engine
from server.kernel.db.faults import dependency_fault
from server.kernel.errors import Fault, GatewayError
from tests.billing.conftest import unique
from tests.support.gateway import ROOT, GatewayProcess, raw_test_config, token
from tests.support.postgres_process import RestartablePostgres

SCOPES = ("billing:admin", "billing:charge", "billing:read")
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def is_outage(error: GatewayError | None) -> bool:
    return (error is not None and error.code is Fault.UNAVAILABLE
            and error.reason == "DEPENDENCY_UNAVAILABLE" and error.retry_after_s is not None)


async def raised(call: Callable[[], Awaitable[Any]]) -> BaseException:
    """What ``call()`` raised (asyncpg raises some errors at the call, others when awaited)."""
    try:
        await call()
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        return exc
    raise AssertionError("expected an exception")


async def terminate(url: str, pid: int) -> None:
    """End backend ``pid`` the way a fast shutdown does (57P01) and wait until it is gone."""
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_terminate_backend($1)", pid)
        for _ in range(200):
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = $1",
                                       pid):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"backend {pid} outlived pg_terminate_backend")
    finally:
        await conn.close()


# -- the classifier --------------------------------------------------------------------


async def test_a_query_whose_backend_is_terminated_is_an_outage_and_so_is_what_follows(
        pg_url):
    url = asyncpg_url(pg_url)
    conn = await asyncpg.connect(url)
    in_flight = asyncio.create_task(conn.fetchval("SELECT pg_sleep(10)"))
    await asyncio.sleep(0.1)
    await terminate(url, conn.get_server_pid())
    first = await raised(lambda: in_flight)
    again = await raised(lambda: conn.fetchval("SELECT 1"))
    assert isinstance(first, asyncpg.ConnectionDoesNotExistError)  # from AdminShutdownError
    assert isinstance(again, asyncpg.InterfaceError)  # "connection is closed"
    assert is_outage(dependency_fault(first)) and is_outage(dependency_fault(again))


async def test_a_database_that_does_not_answer_in_time_is_an_outage(pg_url):
    """A write that timed out may or may not have committed: UNAVAILABLE, and the retry with
    the same idempotency key applies or replays it."""
    conn = await asyncpg.connect(asyncpg_url(pg_url))
    try:
        error = await raised(lambda: conn.execute("SELECT pg_sleep(1)", timeout=0.01))
    finally:
        await conn.close()
    assert isinstance(error, TimeoutError)
    assert is_outage(dependency_fault(error))


async def test_a_pool_connection_the_server_dropped_is_an_outage(pg_url):
    url = asyncpg_url(pg_url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await terminate(url, conn.get_server_pid())
            await asyncio.sleep(0.05)  # asyncpg notices and detaches the holder's proxy
            error = await raised(lambda: conn.fetchval("SELECT 1"))
        assert is_outage(dependency_fault(error)), repr(error)
        assert await pool.fetchval("SELECT 1") == 1  # and the pool replaced it
    finally:
        await pool.close()


def fatal_message(sqlstate: str, text: str) -> bytes:
    """A protocol ErrorResponse of severity FATAL, as the server sends it when it ends a
    session."""
    fields = b"".join(tag + value.encode() + b"\0" for tag, value in (
        (b"S", "FATAL"), (b"V", "FATAL"), (b"C", sqlstate), (b"M", text))) + b"\0"
    return b"E" + (len(fields) + 4).to_bytes(4, "big") + fields


async def test_an_idle_connection_between_the_servers_goodbye_and_its_close_is_an_outage(
        pg_url):
    """The window a fast shutdown opens on idle pooled connections: the FATAL has arrived,
    the socket's end not yet. asyncpg refuses the next operation with an internal error;
    it is the connection's death, not our bug."""
    conn = await asyncpg.connect(asyncpg_url(pg_url))
    try:
        conn._protocol.data_received(fatal_message(  # what the server's goodbye does to it
            "57P01", "terminating connection due to administrator command"))
        error = await raised(lambda: conn.fetchval("SELECT 1"))
    finally:
        conn.terminate()
    assert isinstance(error, asyncpg.exceptions.InternalClientError), repr(error)
    assert is_outage(dependency_fault(error))
    assert dependency_fault(asyncpg.exceptions.InternalClientError("not connected")) is None


async def test_a_sqlalchemy_connection_the_server_dropped_is_an_outage(pg_url):
    engine = create_engine(pg_url, 1)
    try:
        async with engine.connect() as conn:
            pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            await terminate(asyncpg_url(pg_url), pid)
            error = await raised(lambda: conn.execute(text("SELECT 1")))
        assert is_outage(dependency_fault(error)), repr(error)
    finally:
        await engine.dispose()


async def test_statement_errors_and_our_own_bugs_are_not_outages(pg_url):
    conn = await asyncpg.connect(asyncpg_url(pg_url))
    try:
        bugs = [
            await raised(lambda: conn.fetchval("SELECT * FROM no_such_table")),
            await raised(lambda: conn.fetchval("SELECT 1 / 0")),
            await raised(lambda: conn.fetchval("SELECT $1::int", "not a number")),  # DataError
            await raised(lambda: conn.fetchval("SELECT $1::int")),  # wrong argument count
        ]
    finally:
        await conn.close()
    engine = create_engine(pg_url, 1)
    try:
        async with engine.connect() as sa:
            bugs.append(await raised(lambda: sa.execute(text("SELECT * FROM no_such_table"))))
    finally:
        await engine.dispose()
    try:
        Path("/nonexistent/prompt.yaml").read_text()  # an OS error of our own
    except OSError as exc:
        bugs.append(exc)
    bugs += [KeyError("x"), GatewayError(Fault.NOT_FOUND, "NOT_FOUND", "no such thing")]
    assert [dependency_fault(b) for b in bugs] == [None] * len(bugs)


def test_server_states_that_mean_come_back_later_are_outages():
    """Raised by a server that is starting up, shutting down, crashed or full."""
    for error in (asyncpg.CannotConnectNowError("the database system is starting up"),
                  asyncpg.AdminShutdownError("terminating connection due to administrator "
                                             "command"),
                  asyncpg.CrashShutdownError("terminating connection because of crash of "
                                             "another server process"),
                  asyncpg.TooManyConnectionsError("sorry, too many clients already"),
                  asyncpg.ConnectionFailureError("connection failure"),
                  asyncpg.SerializationError("could not serialize access"),
                  asyncpg.DeadlockDetectedError("deadlock detected"),
                  ConnectionRefusedError(111, "Connection refused"),
                  ConnectionResetError(104, "Connection reset by peer")):
        assert is_outage(dependency_fault(error)), repr(error)
    wrapped = RuntimeError("while reading the wallet")
    wrapped.__cause__ = asyncpg.AdminShutdownError("terminating connection")
    assert is_outage(dependency_fault(wrapped))  # ``raise … from`` is followed
    handled = RuntimeError("a bug while handling an outage")
    handled.__context__ = asyncpg.AdminShutdownError("terminating connection")
    assert dependency_fault(handled) is None  # an implicit context is not


# -- the ledger writer -------------------------------------------------------------------


class FaultyPool:
    """The real pool, with a fault injected at acquire (the backend is terminated before
    the statement) or at release (after the results are in)."""

    def __init__(self, pool: asyncpg.Pool, url: str, *, kill_on_acquire: bool = False,
                 fail_release: bool = False) -> None:
        self._pool, self._url = pool, url
        self._kill, self._fail_release = kill_on_acquire, fail_release
        self.acquired = 0

    async def acquire(self) -> Any:
        conn = await self._pool.acquire()
        self.acquired += 1
        if self._kill:
            await terminate(self._url, conn.get_server_pid())
        return conn

    async def release(self, conn: Any) -> None:
        await self._pool.release(conn)
        if self._fail_release:
            raise asyncpg.ConnectionDoesNotExistError("connection was closed in the middle "
                                                      "of operation")


def credits(wallet: str, scope: str, n: int) -> list[Operation]:
    return [Operation(Kind.CREDIT, scope, f"k{i}", request_hash(Kind.CREDIT, {"i": i}),
                      wallet, 100 + i) for i in range(n)]


async def submit_all(writer: LedgerWriter, ops: list[Operation]) -> list[Any]:
    writer.start()
    try:
        return await asyncio.gather(*(writer.submit(op) for op in ops), return_exceptions=True)
    finally:
        await writer.stop()


async def test_a_committed_batch_is_answered_even_when_its_connection_cannot_go_back(
        pg_url, billing, funded_wallet, scope, caplog):
    url = asyncpg_url(pg_url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=2)
    wallet = await funded_wallet()
    ops = credits(wallet, scope, 8)
    try:
        writer = LedgerWriter(FaultyPool(pool, url, fail_release=True), writers=1)  # type: ignore[arg-type]
        results = await submit_all(writer, ops)
    finally:
        await pool.close()
    assert [r.ok and not r.replayed for r in results] == [True] * 8, results
    assert (await billing.ledger.wallet(wallet)).balance == sum(op.amount for op in ops)
    assert "could not return a ledger connection" in caplog.text


async def test_a_batch_whose_connection_dies_is_unavailable_and_not_split(
        pg_url, billing, funded_wallet, scope):
    """Not the one-by-one path (that is for statement errors): one acquire, every caller
    UNAVAILABLE, nothing applied; the retry with the same keys lands each exactly once."""
    url = asyncpg_url(pg_url)
    pool = await asyncpg.create_pool(url, min_size=0, max_size=2)
    wallet = await funded_wallet()
    ops = credits(wallet, scope, 8)
    try:
        faulty = FaultyPool(pool, url, kill_on_acquire=True)
        writer = LedgerWriter(faulty, writers=1)  # type: ignore[arg-type]
        writer.start()
        try:  # queued before the writer runs: one batch
            failed = await asyncio.gather(*(writer.submit(op) for op in ops),
                                          return_exceptions=True)
        finally:
            await writer.stop()
        assert faulty.acquired == 1
        assert all(is_outage(f) for f in failed), failed  # type: ignore[arg-type]
        assert (await billing.ledger.wallet(wallet)).balance == 0
        retried = await submit_all(LedgerWriter(pool, writers=1), ops)
        again = await submit_all(LedgerWriter(pool, writers=1), ops)
    finally:
        await pool.close()
    assert [r.ok and not r.replayed for r in retried] == [True] * 8
    assert [r.replayed for r in again] == [True] * 8
    assert (await billing.ledger.wallet(wallet)).balance == sum(op.amount for op in ops)


class GoodbyeOnce:
    """The real pool, except that the first connection handed out has just received the
    server's goodbye (as in a fast shutdown), its socket not yet closed."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.armed = True

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Any]:
        async with self._pool.acquire() as conn:
            if self.armed:
                self.armed = False
                conn._protocol.data_received(fatal_message(
                    "57P01", "terminating connection due to administrator command"))
            yield conn


async def test_the_usage_recorder_keeps_its_records_through_a_dropped_connection(pg_url):
    """It waits for the database and writes them later; it neither drops them nor dies."""
    url = asyncpg_url(pg_url)
    pool = await asyncpg.create_pool(url, min_size=1, max_size=1)
    faulty = GoodbyeOnce(pool)
    recorder = UsageRecorder(faulty, linger_s=0)  # type: ignore[arg-type]
    trace_id = unique("trace")
    await recorder.start()
    try:
        recorder.record(UsageRecord(trace_id=trace_id, method="Generate", service="tests",
                                    status="OK", latency_ms=1.0))
        written = 0
        for _ in range(100):  # it retries after a second
            written = await pool.fetchval("SELECT count(*) FROM usage_records "
                                          "WHERE trace_id = $1", trace_id)
            if written:
                break
            await asyncio.sleep(0.05)
    finally:
        await recorder.stop()
        await pool.close()
    assert not faulty.armed  # the goodbye was delivered
    assert (written, recorder.dropped) == (1, 0)


# -- a real gateway process through a Postgres restart ---------------------------------------


@pytest.fixture(scope="module")
def own_pg() -> Iterator[RestartablePostgres]:
    with RestartablePostgres() as pg:
        yield pg


@pytest.fixture(scope="module")
def gateway(own_pg: RestartablePostgres,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("db-faults")
    raw = raw_test_config("http://127.0.0.1:9", workdir,
                          database={"url": own_pg.url, "health_interval_s": 0.2},
                          billing={"sweep_interval_s": 0.2})
    raw["rate_limits"]["enabled"] = False  # the load is one caller's burst
    proc = GatewayProcess(raw, workdir).start(timeout_s=90)
    try:
        yield proc
    finally:
        proc.stop()


def ledger_check(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", "ledger", "check"], cwd=ROOT,
                          check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DATABASE_URL": url, "PYTHONPATH": str(ROOT)})


def internal_errors(proc: GatewayProcess) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in proc.metrics_text().splitlines()
               if line.startswith("llmgw_internal_errors_total{"))


async def health_becomes(channel: grpc.aio.Channel, status: int, within_s: float) -> bool:
    stub = health_pb2_grpc.HealthStub(channel)
    for _ in range(int(within_s / 0.05)):
        if (await stub.Check(health_pb2.HealthCheckRequest(), timeout=2)).status == status:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_charges_through_a_postgres_restart_are_ok_or_unavailable_and_land_once(
        own_pg, gateway):
    subject = unique("svc")
    md = (("authorization", f"Bearer {token(*SCOPES, subject=subject)}"),)
    rng = random.Random(11)
    n, concurrency, pace_s = 240, 24, 0.1
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = pb_grpc.BillingServiceStub(channel)
        wallet = unique("restart")
        await stub.CreateWallet(pb.CreateWalletRequest(wallet_id=wallet, currency_code="USD"),
                                metadata=md)
        await stub.CreditWallet(pb.CreditWalletRequest(
            wallet_id=wallet, amount_micros=10_000_000, idempotency_key="seed"), metadata=md)
        initial = (await stub.GetBalance(pb.GetBalanceRequest(wallet_id=wallet),
                                         metadata=md)).balance_micros
        charges = [pb.ChargeRequest(wallet_id=wallet, idempotency_key=f"load-{i}",
                                    amount_micros=rng.randint(100, 999)) for i in range(n)]
        todo = list(charges)
        answers: dict[str, tuple[grpc.StatusCode, str]] = {}
        seen_down: dict[str, Any] = {}

        outstanding = [0]

        async def caller() -> None:
            while todo:
                request = todo.pop(0)
                outstanding[0] += 1
                try:
                    reply = await stub.Charge(request, metadata=md, timeout=10)
                    answers[request.idempotency_key] = (grpc.StatusCode.OK,
                                                        reply.transaction_id)
                except grpc.aio.AioRpcError as err:
                    answers[request.idempotency_key] = (err.code(), err.details() or "")
                finally:
                    outstanding[0] -= 1
                await asyncio.sleep(pace_s)

        async def restart() -> None:
            while len(answers) < 40:  # charges are flowing
                await asyncio.sleep(0.005)
            # Hold the wallet's row lock so that every caller's next charge is inside
            # ledger_apply, waiting, when the server goes down: in flight for certain.
            blocker = await asyncpg.connect(asyncpg_url(own_pg.url))
            await blocker.execute("BEGIN")
            await blocker.execute("SELECT 1 FROM ledger_accounts WHERE id = $1 FOR UPDATE",
                                  wallet)
            waiting = 0
            for _ in range(200):
                waiting = await blocker.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")
                if waiting:
                    break
                await asyncio.sleep(0.01)
            seen_down["blocked batches"] = waiting > 0
            await asyncio.sleep(2 * pace_s)  # every caller has a charge outstanding
            seen_down["in flight"] = outstanding[0] == concurrency
            await asyncio.to_thread(own_pg.stop)
            blocker.terminate()
            try:
                await stub.GetBalance(pb.GetBalanceRequest(wallet_id=wallet), metadata=md,
                                      timeout=5)
                seen_down["balance"] = grpc.StatusCode.OK
            except grpc.aio.AioRpcError as err:
                seen_down["balance"] = err.code()
            seen_down["health"] = await health_becomes(channel, NOT_SERVING, within_s=5)
            await asyncio.to_thread(own_pg.start)
            seen_down["back"] = await health_becomes(channel, SERVING, within_s=10)

        await asyncio.gather(restart(), *(caller() for _ in range(concurrency)))

        assert seen_down == {"blocked batches": True, "in flight": True,
                             "balance": grpc.StatusCode.UNAVAILABLE, "health": True,
                             "back": True}
        codes = {code for code, _ in answers.values()}
        assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, {
            k: v for k, v in answers.items() if v[0] not in (grpc.StatusCode.OK,
                                                             grpc.StatusCode.UNAVAILABLE)}
        unavailable = [c for c in charges
                       if answers[c.idempotency_key][0] is grpc.StatusCode.UNAVAILABLE]
        assert unavailable, "no charge met the outage"
        assert len(unavailable) < n, "no charge succeeded"

        conn = await asyncpg.connect(asyncpg_url(own_pg.url))
        try:
            first = {r["idempotency_key"]: r for r in await conn.fetch(
                "SELECT idempotency_key, id, amount FROM ledger_transactions "
                "WHERE scope = $1 AND kind = 'charge'", subject)}
        finally:
            await conn.close()
        for c in charges:
            code, transaction_id = answers[c.idempotency_key]
            if code is grpc.StatusCode.OK:  # answered OK: it is in the ledger, as answered
                row = first[c.idempotency_key]
                assert (str(row["id"]), row["amount"]) == (transaction_id, -c.amount_micros)

        # The caller retries each UNAVAILABLE charge with its key until it is answered.
        replayed = 0
        for c in unavailable:
            for _ in range(50):
                try:
                    reply = await stub.Charge(c, metadata=md, timeout=5)
                    replayed += reply.replayed
                    break
                except grpc.aio.AioRpcError as err:
                    assert err.code() is grpc.StatusCode.UNAVAILABLE, err
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"{c.idempotency_key} never succeeded")
        # A replay is a charge whose batch committed although its caller heard UNAVAILABLE.
        assert replayed == sum(c.idempotency_key in first for c in unavailable)
        final = (await stub.GetBalance(pb.GetBalanceRequest(wallet_id=wallet),
                                       metadata=md)).balance_micros

    conn = await asyncpg.connect(asyncpg_url(own_pg.url))
    try:
        per_key = await conn.fetch(
            "SELECT idempotency_key, count(*) AS n, sum(amount) AS amount "
            "FROM ledger_transactions WHERE scope = $1 AND kind = 'charge' "
            "GROUP BY idempotency_key", subject)
    finally:
        await conn.close()
    assert len(per_key) == n and all(r["n"] == 1 for r in per_key)
    assert -sum(r["amount"] for r in per_key) == sum(c.amount_micros for c in charges)
    assert final == initial - sum(c.amount_micros for c in charges)
    assert internal_errors(gateway) == 0
    check = ledger_check(own_pg.url)
    assert check.returncode == 0, check.stdout + check.stderr


async def test_the_python_client_retries_a_charge_through_an_outage(own_pg, gateway):
    """Charge while Postgres is down; it comes back a moment later. The client's UNAVAILABLE
    retries (same request, so the same idempotency key) land the charge exactly once."""
    subject = unique("svc")
    wallet = unique("client")
    async with GatewayClient(gateway.target, token_source=StaticToken(token(*SCOPES,
                                                                            subject=subject)),
                             timeout_s=20, max_retries=30,
                             backoff=Backoff(initial_s=0.05, max_s=0.2)) as client:
        await client.create_wallet(wallet, "USD")
        await client.credit_wallet(wallet, "seed", 5_000)
        await asyncio.to_thread(own_pg.stop)
        later = threading.Timer(1.0, own_pg.start)
        later.start()
        try:
            charged = await client.charge(wallet, "through-the-outage", 1_234)
        finally:
            later.join()
        balance = await client.get_balance(wallet)
    assert not charged.replayed
    assert balance.balance_micros == 5_000 - 1_234
    conn = await asyncpg.connect(asyncpg_url(own_pg.url))
    try:
        rows = await conn.fetch("SELECT id FROM ledger_transactions WHERE scope = $1 "
                                "AND idempotency_key = 'through-the-outage'", subject)
    finally:
        await conn.close()
    assert [str(r["id"]) for r in rows] == [charged.transaction_id]
    assert internal_errors(gateway) == 0
