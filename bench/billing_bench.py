"""Ledger benchmark: charges per second and latency, on spread wallets and on one hot wallet.

Four paths, each with 32 concurrent callers for a fixed window, and the invariant checker
run after every window (a fast ledger that breaks the books does not count):

  naive     a row-locked design driven from Python, one transaction per charge:
            BEGIN; SELECT … FOR UPDATE (wallet); INSERT transaction; INSERT entries;
            UPDATE wallet; UPDATE revenue; COMMIT — what the ledger replaced;
  ledger    the bare ledger function (server.billing: batched ``ledger_apply``);
  rpc       the Charge RPC of a `llmgw serve` process (auth, interceptors, ledger),
            driven from this process over 127.0.0.1;
  rpc x2    the same with `llmgw serve --workers 2`.

Then a hostile caller beside the 32 normal ones, side by side with the same 32 alone (one
`llmgw serve` process): it sends Charges back to back whose idempotency key or
description holds a NUL byte. Validation must refuse every one (INVALID_ARGUMENT) before
the ledger's batch, which Postgres would fail as a whole (NUL is not valid text), so the
normal callers' throughput and p99 must not move. The table shows the hostile caller's
answers, how many ledger operations the gateway applied beyond the normal callers' charges
(must be 0) and its rows in the ledger (must be 0).

Run (embedded Postgres in a scratch directory unless DATABASE_URL is set):

    .venv/bin/python bench/billing_bench.py             # about 90 s
    .venv/bin/python bench/billing_bench.py --window 3  # shorter windows
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg

from bench._common import fmt, load_text, percentile, table

CALLERS = 32
WALLETS = 1_000
FUNDS = 10**14


async def naive_charge(pool: asyncpg.Pool, scope: str, wallet: str, key: str, amount: int) -> None:
    """The design the ledger replaced: correct (row lock, conditional debit), but the locks
    are held across six client round trips and a commit."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow("SELECT balance + pending + overdraft_limit AS available, "
                                  "currency_code FROM ledger_accounts WHERE id = $1 FOR UPDATE",
                                  wallet)
        if row["available"] < amount:
            raise RuntimeError("insufficient funds")
        revenue = "system:revenue:" + row["currency_code"]
        await conn.execute("SELECT 1 FROM ledger_accounts WHERE id = $1 FOR UPDATE", revenue)
        balance = await conn.fetchval(
            "UPDATE ledger_accounts SET balance = balance - $2 WHERE id = $1 RETURNING balance",
            wallet, amount)
        await conn.execute("UPDATE ledger_accounts SET balance = balance + $2 WHERE id = $1",
                           revenue, amount)
        txn = await conn.fetchval(
            "INSERT INTO ledger_transactions (kind, wallet_id, amount, balance_after, scope, "
            "idempotency_key, request_hash) VALUES ('charge', $1, $2, $3, $4, $5, 'naive') "
            "RETURNING id", wallet, -amount, balance, scope, key)
        await conn.executemany("INSERT INTO ledger_entries VALUES ($1, $2, $3, false)",
                               [(txn, wallet, -amount), (txn, revenue, amount)])


async def lock_waiters(url: str, stop: asyncio.Event) -> float:
    """Average number of backends waiting on a lock (pg_stat_activity, every 50 ms): the
    evidence for *why* a design is slow."""
    conn = await asyncpg.connect(url)
    samples: list[int] = []
    try:
        while not stop.is_set():
            samples.append(await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"))
            await asyncio.sleep(0.05)
    finally:
        await conn.close()
    return sum(samples) / len(samples) if samples else float("nan")


async def drive(call: Callable[[int, int], Awaitable[None]], window_s: float,
                url: str, beside: Callable[[float], Awaitable[None]] | None = None,
                ) -> tuple[int, list[float], int, float]:
    """``CALLERS`` coroutines calling ``call(caller, i)`` back to back for ``window_s``;
    ``beside(stop_at)`` (a hostile caller) runs meanwhile and is not measured."""
    stop = asyncio.Event()
    sampler = asyncio.create_task(lock_waiters(url, stop))
    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + window_s

    async def caller(c: int) -> None:
        nonlocal errors
        i = 0
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            try:
                await call(c, i)
            except Exception:  # noqa: BLE001 - counted and reported, the bench goes on
                errors += 1
            latencies.append(time.perf_counter() - t0)
            i += 1

    started = time.monotonic()
    await asyncio.gather(*(caller(c) for c in range(CALLERS)),
                         *([beside(stop_at)] if beside else []))
    elapsed = time.monotonic() - started
    stop.set()
    return int((len(latencies) - errors) / elapsed), latencies, errors, await sampler


async def check(url: str) -> str:
    from server.billing.checker import check_ledger

    conn = await asyncpg.connect(url)
    try:
        violations = await check_ledger(conn)
    finally:
        await conn.close()
    return "OK" if not violations else f"{len(violations)} VIOLATIONS"


async def setup_wallets(ledger, run: str) -> tuple[list[str], str]:  # type: ignore[no-untyped-def]
    spread = [f"bench-{run}-{i}" for i in range(WALLETS)]
    hot = f"bench-{run}-hot"
    for wallet in (*spread, hot):
        await ledger.create_wallet(wallet, "USD")
    await asyncio.gather(*(ledger.credit("bench", w, f"seed-{w}", FUNDS) for w in (*spread, hot)))
    return spread, hot


def hostile_caller(stub, md, wallet: Callable[[], str], run: str,  # type: ignore[no-untyped-def]
                   answers: Counter[str]) -> Callable[[float], Awaitable[None]]:
    """One caller sending, back to back, Charges with a NUL byte in the idempotency key or
    in the description (alternately); ``answers`` counts the status codes it gets."""
    import grpc
    from llmgateway.v1 import billing_pb2 as pb

    async def hostile(stop_at: float) -> None:
        i = 0
        while time.monotonic() < stop_at:
            in_key = i % 2 == 0
            request = pb.ChargeRequest(
                wallet_id=wallet(), amount_micros=7,
                idempotency_key=f"{run}-hostile-{i}" + ("\x00" if in_key else ""),
                description="" if in_key else "free\x00lunch")
            try:
                await stub.Charge(request, metadata=md)
                answers["OK"] += 1
            except grpc.aio.AioRpcError as err:
                answers[err.code().name] += 1
            i += 1

    return hostile


def ledger_ops(proc) -> float:  # type: ignore[no-untyped-def]
    """Ledger operations the gateway process has applied (its metrics endpoint)."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in proc.metrics_text().splitlines()
               if line.startswith("llmgw_ledger_operations_total{"))


async def hostile_rows(url: str, proc, run: str, window_s: float,  # type: ignore[no-untyped-def]
                       wallet_for: Callable[[str], str]) -> list[tuple[object, ...]]:
    """The 32 normal callers alone, then with the hostile caller beside them, per mode."""
    import grpc
    from llmgateway.v1 import billing_pb2 as pb
    from llmgateway.v1 import billing_pb2_grpc as pb_grpc

    from tests.support.gateway import bearer

    md = bearer("billing:charge", subject=f"bench-{run}")
    hostile_scope = f"bench-hostile-{run}"
    hostile_md = bearer("billing:charge", subject=hostile_scope)
    options = [("grpc.use_local_subchannel_pool", 1)]
    channels = [grpc.aio.insecure_channel(proc.target, options=options) for _ in range(4)]
    stubs = [pb_grpc.BillingServiceStub(ch) for ch in channels]
    own = grpc.aio.insecure_channel(proc.target, options=options)  # its own connection
    hostile_stub = pb_grpc.BillingServiceStub(own)
    rows: list[tuple[object, ...]] = []
    try:
        for mode in ("spread", "hot"):
            def normal(phase: str, mode: str = mode) -> Callable[[int, int], Awaitable[None]]:
                async def rpc(c: int, i: int) -> None:
                    await stubs[c % len(stubs)].Charge(pb.ChargeRequest(
                        wallet_id=wallet_for(mode), amount_micros=7,
                        idempotency_key=f"{run}-hostile-{phase}-{mode}-{c}-{i}"), metadata=md)
                return rpc

            if mode == "spread":
                await drive(normal("warm-up"), min(2.0, window_s), url)
            for with_hostile in (False, True):
                answers: Counter[str] = Counter()
                beside = hostile_caller(hostile_stub, hostile_md, lambda m=mode: wallet_for(m),
                                        run, answers) if with_hostile else None
                ops0 = ledger_ops(proc)
                started = time.monotonic()
                rate, lat, errors, _ = await drive(
                    normal(f"{'with' if with_hostile else 'alone'}"), window_s, url, beside)
                elapsed = time.monotonic() - started
                extra_ops = ledger_ops(proc) - ops0 - (len(lat) - errors)
                hostile_calls = sum(answers.values())
                rows.append((mode, "yes" if with_hostile else "no", f"{rate:,}",
                             fmt(percentile(lat, 50) * 1e3), fmt(percentile(lat, 99) * 1e3),
                             errors,
                             f"{int(hostile_calls / elapsed):,}" if with_hostile else "-",
                             ", ".join(f"{k} {v:,}" for k, v in sorted(answers.items()))
                             if with_hostile else "-",
                             f"{extra_ops:.0f}"))
        conn = await asyncpg.connect(url)
        try:
            in_ledger = await conn.fetchval(
                "SELECT count(*) FROM ledger_transactions WHERE scope = $1", hostile_scope)
        finally:
            await conn.close()
        rows = [(*row, in_ledger if row[1] == "yes" else "-") for row in rows]
    finally:
        for ch in (*channels, own):
            await ch.close()
    return rows


def rpc_gateway(url: str, workdir: Path, workers: int):  # type: ignore[no-untyped-def]
    from tests.support.gateway import GatewayProcess, free_port, raw_test_config

    raw = raw_test_config("http://127.0.0.1:9", workdir, database={"url": url})
    raw["rate_limits"]["enabled"] = False
    raw["logging"] = {"level": "ERROR", "json_format": True}
    proc = GatewayProcess(raw, workdir, port=free_port(), workers=workers)
    proc.start(timeout_s=120)
    return proc


async def main(window_s: float) -> None:
    from server.billing.pricing import PriceList
    from server.billing.runtime import BillingRuntime, BillingSettings, asyncpg_url
    from server.kernel.db.embedded import start_embedded
    from server.kernel.db.migrate import upgrade

    scratch = Path(tempfile.mkdtemp(prefix="llmgw-billing-bench-"))
    url = os.environ.get("DATABASE_URL") or start_embedded(scratch)
    await asyncio.to_thread(upgrade, url)
    url = asyncpg_url(url)
    run = uuid.uuid4().hex[:8]
    runtime = BillingRuntime(url, PriceList({}), BillingSettings(pool_size=CALLERS))
    ledger = await runtime.start(sweep=False)
    spread, hot = await setup_wallets(ledger, run)
    naive_pool = await asyncpg.create_pool(url, min_size=CALLERS, max_size=CALLERS)
    print(f"# billing bench: {CALLERS} callers, {WALLETS} wallets, {window_s:.0f} s windows; "
          f"{load_text()}")
    rows = []

    def wallet_for(mode: str) -> str:
        return hot if mode == "hot" else random.choice(spread)

    for mode in ("spread", "hot"):
        async def naive(c: int, i: int, mode: str = mode) -> None:
            await naive_charge(naive_pool, "bench-naive", wallet_for(mode),
                               f"{run}-naive-{mode}-{c}-{i}", 7)

        async def bare(c: int, i: int, mode: str = mode) -> None:
            await ledger.charge("bench", wallet_for(mode), f"{run}-bare-{mode}-{c}-{i}", amount=7)

        for name, call in (("naive (python row locks)", naive), ("ledger function", bare)):
            batches0, ops0 = runtime.writer.batches, runtime.writer.operations
            rate, lat, errors, waiting = await drive(call, window_s, url)
            batches = runtime.writer.batches - batches0
            per_batch = (runtime.writer.operations - ops0) / batches if batches else float("nan")
            rows.append((name, mode, f"{rate:,}", fmt(percentile(lat, 50) * 1e3),
                         fmt(percentile(lat, 99) * 1e3), errors,
                         fmt(per_batch, 1) if name.startswith("ledger") else "-",
                         fmt(waiting, 1), await check(url)))
    await naive_pool.close()
    await runtime.stop()

    import grpc
    from llmgateway.v1 import billing_pb2 as pb
    from llmgateway.v1 import billing_pb2_grpc as pb_grpc

    from tests.support.gateway import bearer

    md = bearer("billing:charge", subject=f"bench-{run}")
    hostile: list[tuple[object, ...]] = []
    for workers in (1, 2):
        proc = rpc_gateway(url, scratch, workers)
        try:
            channels = [grpc.aio.insecure_channel(proc.target,
                                                  options=[("grpc.use_local_subchannel_pool", 1)])
                        for _ in range(4)]
            stubs = [pb_grpc.BillingServiceStub(ch) for ch in channels]
            for mode in ("spread", "hot"):
                def rpc_caller(phase: str, mode: str = mode, stubs: list = stubs,
                               workers: int = workers) -> Callable[[int, int], Awaitable[None]]:
                    async def rpc(c: int, i: int) -> None:
                        await stubs[c % len(stubs)].Charge(pb.ChargeRequest(
                            wallet_id=wallet_for(mode), amount_micros=7,
                            idempotency_key=f"{run}-rpc{workers}-{phase}-{mode}-{c}-{i}"),
                            metadata=md)
                    return rpc

                if mode == "spread":  # warm the fresh process (connections, caches) first
                    await drive(rpc_caller("warm-up"), min(2.0, window_s), url)
                rate, lat, errors, waiting = await drive(rpc_caller("measured"), window_s, url)
                rows.append((f"Charge RPC, {workers} worker{'s' if workers > 1 else ''}", mode,
                             f"{rate:,}", fmt(percentile(lat, 50) * 1e3),
                             fmt(percentile(lat, 99) * 1e3), errors, "-", fmt(waiting, 1),
                             await check(url)))
            for ch in channels:
                await ch.close()
            if workers == 1:
                hostile = await hostile_rows(url, proc, run, window_s, wallet_for)
        finally:
            proc.stop()
    print(table(["path", "wallets", "charges/s", "p50 ms", "p99 ms", "errors", "ops/batch",
                 "lock waiters", "ledger check"], rows, align_left=2))
    print(f"\n# Charge RPC, 1 worker: {CALLERS} normal callers, alone and beside one hostile "
          f"caller (NUL in key or description); ledger check after: {await check(url)}")
    print(table(["wallets", "hostile", "normal charges/s", "p50 ms", "p99 ms", "errors",
                 "hostile calls/s", "hostile answers", "extra ledger ops",
                 "hostile rows in ledger"], hostile, align_left=2))
    if not os.environ.get("DATABASE_URL"):
        from bench.gateway_bench import stop_embedded_postgres

        stop_embedded_postgres(scratch)
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=8.0, help="seconds per measurement")
    asyncio.run(main(parser.parse_args().window))
