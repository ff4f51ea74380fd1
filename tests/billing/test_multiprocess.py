"""Exactness across server processes: a hot wallet under concurrent charges from several
`llmgw serve` processes, and a process killed (SIGKILL) in the middle of a charge load."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import grpc
import pytest
from llmgateway.v1 import billing_pb2 as pb
from llmgateway.v1 import billing_pb2_grpc as pb_grpc
from llmgateway.v1 import generation_pb2 as gpb
from llmgateway.v1 import generation_pb2_grpc as gpb_grpc

from server.billing.runtime import asyncpg_url
from tests.billing.conftest import unique
from tests.support.gateway import ROOT, GatewayProcess, bearer, raw_test_config

SCOPES = ("billing:admin", "billing:charge", "billing:read")


def gateway_config(pg_url: str, workdir: Path) -> dict:
    # No vendor is called here: the simulator URL only has to be well formed.
    return raw_test_config("http://127.0.0.1:9", workdir, database={"url": pg_url},
                           billing={"sweep_interval_s": 0.2})


@pytest.fixture(scope="module")
def processes(pg_url: str,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[GatewayProcess]]:
    workdir = tmp_path_factory.mktemp("billing-procs")
    procs = [GatewayProcess(gateway_config(pg_url, workdir), workdir) for _ in range(3)]
    try:
        for p in procs:
            p.start(timeout_s=90)
        yield procs
    finally:
        for p in procs:
            p.stop()


def ledger_check(pg_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", "ledger", "check"], cwd=ROOT,
                          check=False,
                          env={**os.environ, "DATABASE_URL": pg_url, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)


async def test_hot_wallet_exactly_n_of_64_charges_succeed_across_processes(processes, pg_url):
    md = bearer(*SCOPES, subject=unique("svc"))
    channels = [grpc.aio.insecure_channel(p.target) for p in processes]
    stubs = [pb_grpc.BillingServiceStub(ch) for ch in channels]
    wallet, n, price = unique("hot"), 23, 1_000
    await stubs[0].CreateWallet(pb.CreateWalletRequest(wallet_id=wallet, currency_code="USD"),
                                metadata=md)
    await stubs[0].CreditWallet(pb.CreditWalletRequest(wallet_id=wallet, amount_micros=n * price,
                                                       idempotency_key="seed"), metadata=md)
    lowest = [n * price]
    done = asyncio.Event()

    async def watch_balance() -> None:
        conn = await asyncpg.connect(asyncpg_url(pg_url))
        try:
            while not done.is_set():
                row = await conn.fetchrow("SELECT balance + pending AS available "
                                          "FROM ledger_accounts WHERE id = $1", wallet)
                lowest[0] = min(lowest[0], row["available"])
                await asyncio.sleep(0.005)
        finally:
            await conn.close()

    async def charge(i: int) -> str:
        try:
            await stubs[i % len(stubs)].Charge(pb.ChargeRequest(
                wallet_id=wallet, idempotency_key=f"c{i}", amount_micros=price), metadata=md)
            return "ok"
        except grpc.aio.AioRpcError as err:
            assert err.code() is grpc.StatusCode.FAILED_PRECONDITION, err
            return "no funds"

    watcher = asyncio.create_task(watch_balance())
    outcomes = await asyncio.gather(*(charge(i) for i in range(64)))
    done.set()
    await watcher
    assert outcomes.count("ok") == n
    balance = await stubs[1].GetBalance(pb.GetBalanceRequest(wallet_id=wallet), metadata=md)
    assert balance.balance_micros == 0
    assert lowest[0] >= 0
    for ch in channels:
        await ch.close()
    check = ledger_check(pg_url)
    assert check.returncode == 0, check.stdout


async def test_killed_process_loses_nothing_and_charges_each_key_once(pg_url, tmp_path, simulator):
    """SIGKILL a gateway in the middle of charges and streaming generations, restart it,
    retry every request with its key: each key is charged once, the killed streams' holds
    are released by the sweeper, and `llmgw ledger check` passes."""
    simulator.set_scenario("crash-stream", reply_tokens=300, tokens_per_second=60)
    raw = raw_test_config(simulator.base_url, tmp_path, database={"url": pg_url},
                          billing={"sweep_interval_s": 0.2, "hold_ttl_s": 0.5},
                          models={"crash-stream": {
                              "targets": [{"provider": "simulator", "model": "crash-stream"}],
                              "pricing": {"input_per_million_micros": 1_000_000,
                                          "output_per_million_micros": 2_000_000}}})
    md = bearer(*SCOPES, "generate", subject=unique("svc"))
    victim = GatewayProcess(raw, tmp_path).start(timeout_s=90)
    restarted = None
    try:
        async with grpc.aio.insecure_channel(victim.target) as ch:
            stub, gen = pb_grpc.BillingServiceStub(ch), gpb_grpc.GenerationServiceStub(ch)
            wallets = [unique("crash") for _ in range(8)]
            for w in wallets:
                await stub.CreateWallet(pb.CreateWalletRequest(wallet_id=w, currency_code="USD"),
                                        metadata=md)
                await stub.CreditWallet(pb.CreditWalletRequest(
                    wallet_id=w, amount_micros=1_000_000, idempotency_key=f"seed-{w}"),
                    metadata=md)
            charges = [pb.ChargeRequest(wallet_id=wallets[i % len(wallets)],
                                        idempotency_key=f"load-{i}", amount_micros=100 + i)
                       for i in range(600)]
            streams = [gpb.StreamGenerateRequest(
                model="crash-stream", messages=[gpb.Message(role="user", content="hi")],
                billing=gpb.BillingOptions(wallet_id=w, idempotency_key=f"stream-{w}"))
                for w in wallets]
            streaming = asyncio.Event()

            async def fire(req: pb.ChargeRequest) -> bool:
                try:
                    await stub.Charge(req, metadata=md, timeout=20)
                    return True
                except grpc.aio.AioRpcError:
                    return False

            async def watch(req: gpb.StreamGenerateRequest) -> bool:
                try:
                    # A 3 s deadline: the hold of a killed stream expires 3.5 s after it began.
                    async for event in gen.StreamGenerate(req, metadata=md, timeout=3):
                        if event.HasField("delta"):
                            streaming.set()
                    return True
                except grpc.aio.AioRpcError:
                    return False

            stream_tasks = [asyncio.create_task(watch(r)) for r in streams]
            await asyncio.wait_for(streaming.wait(), 20)
            load = [asyncio.create_task(fire(r)) for r in charges]
            while sum(t.done() for t in load) < 100:  # kill it with charges in flight
                await asyncio.sleep(0.01)
            victim.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            victim.process.wait()  # type: ignore[union-attr]
            first_round = await asyncio.gather(*load)
            assert not all(first_round), "the kill happened after the load had finished"
            assert not any(await asyncio.gather(*stream_tasks)), "a stream outlived the kill"

        # Restart; the client retries every request with the same key.
        restarted = GatewayProcess(raw, tmp_path).start(timeout_s=90)
        async with grpc.aio.insecure_channel(restarted.target) as ch:
            stub, gen = pb_grpc.BillingServiceStub(ch), gpb_grpc.GenerationServiceStub(ch)
            replays = await asyncio.gather(*(stub.Charge(r, metadata=md) for r in charges))
            for ok, reply in zip(first_round, replays):
                if ok:
                    assert reply.replayed  # charged the first time: the retry moves no money
            async def rerun(req: gpb.StreamGenerateRequest) -> gpb.StreamEnd:
                return [e async for e in gen.StreamGenerate(req, metadata=md)][-1].end

            ends = await asyncio.gather(*(rerun(r) for r in streams[:2]))
            assert all(e.charge.amount_micros > 0 and not e.charge.replayed for e in ends)

            conn = await asyncpg.connect(asyncpg_url(pg_url))
            try:
                for _ in range(100):  # the killed streams' holds expire and are swept
                    open_holds = await conn.fetchval(
                        "SELECT count(*) FROM ledger_open_holds WHERE wallet_id = ANY ($1)",
                        wallets)
                    if open_holds == 0:
                        break
                    await asyncio.sleep(0.1)
                assert open_holds == 0
                per_key = await conn.fetch(
                    "SELECT idempotency_key, count(*) AS n, sum(amount) AS amount "
                    "FROM ledger_transactions WHERE scope = $1 AND kind IN ('charge', 'settle') "
                    "GROUP BY idempotency_key", md_subject(md))
                expired = await conn.fetchval(
                    "SELECT count(*) FROM ledger_transactions WHERE kind = 'expire' "
                    "AND wallet_id = ANY ($1)", wallets)
                balances = await conn.fetch(
                    "SELECT balance, pending FROM ledger_accounts WHERE id = ANY ($1)", wallets)
            finally:
                await conn.close()
        assert len(per_key) == len(charges) + 2  # every charge key and the two re-run streams
        assert all(r["n"] == 1 for r in per_key)
        assert expired == len(streams)  # the killed streams' reservations came back
        total = -sum(r["amount"] for r in per_key)
        assert total == sum(r.amount_micros for r in charges) + sum(
            e.charge.amount_micros for e in ends)
        assert sum(b["balance"] for b in balances) == len(wallets) * 1_000_000 - total
        assert all(b["pending"] == 0 for b in balances)
    finally:
        victim.stop()
        if restarted is not None:
            restarted.stop()
    check = ledger_check(pg_url)
    assert check.returncode == 0, check.stdout


def md_subject(md: tuple[tuple[str, str]]) -> str:
    """The subject (idempotency scope) of the test credentials."""
    import jwt

    return jwt.decode(md[0][1].split()[1], options={"verify_signature": False})["sub"]
