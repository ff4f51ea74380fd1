"""Tenant A against tenant B's objects, through a real two-worker gateway with real
Postgres and Redis: every wallet, transaction, budget, namespace, bot and prompt of B is
NOT_FOUND to A — the same answer, word for word, as for a name that exists nowhere — and
nothing of B's moves or is read. Same subject and same idempotency key in both tenants
never collide; a tenant claim signed with the wrong key, or malformed, is UNAUTHENTICATED.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import grpc
import pytest
from llmgateway.v1 import billing_pb2 as bpb
from llmgateway.v1 import billing_pb2_grpc as bpb_grpc
from llmgateway.v1 import config_pb2 as cpb
from llmgateway.v1 import config_pb2_grpc as cpb_grpc
from llmgateway.v1 import generation_pb2 as gpb
from llmgateway.v1 import generation_pb2_grpc as gpb_grpc
from llmgateway.v1 import retrieval_pb2 as rpb
from llmgateway.v1 import retrieval_pb2_grpc as rpb_grpc

from server.fallback.route_store import RouteStore
from server.fallback.routes import route_from_spec
from server.kernel.db.engine import create_engine
from tests.billing.test_multiprocess import ledger_check
from tests.fallback.test_router_scenarios import error_info
from tests.support.gateway import GatewayProcess, bearer, raw_test_config
from tests.support.redis_process import RedisProcess

SCOPES = ("admin",)
SUBJECT = "svc-shared"  # the same service name in both tenants


def as_tenant(tenant: str, **kw) -> tuple[tuple[str, str]]:
    return bearer(*SCOPES, subject=SUBJECT, claims={"tenant": tenant}, **kw)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def gateway(simulator, pg_url: str, redis_server: RedisProcess,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("tenants")
    raw = raw_test_config(simulator.base_url, workdir, database={"url": pg_url},
                          rate_limits={"redis_url": redis_server.url, "rules": []},
                          routing={"routes_refresh_s": 0.2})
    process = GatewayProcess(raw, workdir, workers=2)
    try:
        yield process.start(timeout_s=90)
    finally:
        process.stop()


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    return {"a": unique("alpha"), "b": unique("bravo"), "wallet": unique("w"),
            "ns": unique("docs"), "bot": unique("bot"), "prompt": unique("greet")}


@pytest.fixture(scope="module")
def bravo(gateway: GatewayProcess, names: dict[str, str]) -> dict[str, str]:
    """Tenant B's objects: a funded wallet with a charge and a budget, a namespace with a
    document, a bot with an active config, a prompt."""
    md = as_tenant(names["b"])
    with grpc.insecure_channel(gateway.target) as ch:
        bill = bpb_grpc.BillingServiceStub(ch)
        bill.CreateWallet(bpb.CreateWalletRequest(wallet_id=names["wallet"],
                                                  currency_code="USD"), metadata=md)
        bill.CreditWallet(bpb.CreditWalletRequest(wallet_id=names["wallet"],
                                                  amount_micros=1_000_000,
                                                  idempotency_key="seed"), metadata=md)
        charge = bill.Charge(bpb.ChargeRequest(wallet_id=names["wallet"], idempotency_key="k1",
                                               amount_micros=100), metadata=md)
        bill.SetBudget(bpb.SetBudgetRequest(wallet_id=names["wallet"],
                                            period=bpb.BUDGET_PERIOD_DAY,
                                            metric=bpb.BUDGET_METRIC_TOKENS, limit=10_000),
                       metadata=md)
        rpb_grpc.RetrievalServiceStub(ch).IngestDocuments(rpb.IngestDocumentsRequest(
            namespace=names["ns"], documents=[rpb.Document(
                id="secret", title="Bravo only", text="The bravo launch code is 4711.")]),
            metadata=md)
        conf = cpb_grpc.ConfigServiceStub(ch)
        conf.CreatePromptVersion(cpb.CreatePromptVersionRequest(template=cpb.PromptTemplate(
            key=names["prompt"], system="Bravo's secret system prompt."), activate=True),
            metadata=md)
        conf.CreateBot(cpb.CreateBotRequest(bot=cpb.Bot(slug=names["bot"], name="Bravo bot")),
                       metadata=md)
        conf.CreateBotConfig(cpb.CreateBotConfigRequest(config=cpb.BotConfig(
            bot=names["bot"], provider="simulator", model="sim-chat",
            prompt_key=names["prompt"]), activate=True), metadata=md)
    return {"transaction_id": charge.transaction_id}


def status_of(call) -> tuple[grpc.StatusCode, str, str]:
    """(code, reason, message) of a failing call."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    error = caught.value
    reason = error_info(error).reason
    return error.code(), reason, error.details()


def same_as_missing(attack, missing, secret: str, ghost: str) -> None:
    """Against B's object A gets NOT_FOUND, identical (names aside) to a name that exists
    nowhere: nothing tells A that B's object exists."""
    got, control = status_of(attack), status_of(missing)
    assert got[0] == grpc.StatusCode.NOT_FOUND, got
    assert "|" not in got[2]  # never the stored (tenant-qualified) form of a name
    assert (got[0], got[1], got[2].replace(secret, "X")) == \
        (control[0], control[1], control[2].replace(ghost, "X"))


def test_another_tenants_objects_are_not_found(gateway, names, bravo, simulator):
    md = as_tenant(names["a"])
    ghost = unique("ghost")
    with grpc.insecure_channel(gateway.target) as ch:
        bill = bpb_grpc.BillingServiceStub(ch)
        gen = gpb_grpc.GenerationServiceStub(ch)
        rag = rpb_grpc.RetrievalServiceStub(ch)
        conf = cpb_grpc.ConfigServiceStub(ch)
        wallet = names["wallet"]

        def billed(w: str):
            return lambda: gen.Generate(gpb.GenerateRequest(
                model="sim-chat", messages=[gpb.Message(role="user", content="hi")],
                billing=gpb.BillingOptions(wallet_id=w, idempotency_key=unique("g"))),
                metadata=md, timeout=10)

        vendor_before = simulator.stats()["requests_by_model"].get("sim-chat", 0)
        cases = {
            "billed Generate": lambda w: billed(w),
            "Charge": lambda w: lambda: bill.Charge(bpb.ChargeRequest(
                wallet_id=w, idempotency_key=unique("c"), amount_micros=1), metadata=md),
            "GetBalance": lambda w: lambda: bill.GetBalance(
                bpb.GetBalanceRequest(wallet_id=w), metadata=md),
            "ListTransactions": lambda w: lambda: bill.ListTransactions(
                bpb.ListTransactionsRequest(wallet_id=w), metadata=md),
            "CreditWallet": lambda w: lambda: bill.CreditWallet(bpb.CreditWalletRequest(
                wallet_id=w, amount_micros=5, idempotency_key=unique("cr")), metadata=md),
            "SetBudget": lambda w: lambda: bill.SetBudget(bpb.SetBudgetRequest(
                wallet_id=w, period=bpb.BUDGET_PERIOD_DAY, metric=bpb.BUDGET_METRIC_TOKENS,
                limit=1), metadata=md),
            "ListBudgets": lambda w: lambda: bill.ListBudgets(
                bpb.ListBudgetsRequest(wallet_id=w), metadata=md),
        }
        for name, make in cases.items():
            same_as_missing(make(wallet), make(ghost), wallet, ghost)
        assert simulator.stats()["requests_by_model"].get("sim-chat", 0) == vendor_before

        same_as_missing(lambda: bill.Refund(bpb.RefundRequest(
            transaction_id=bravo["transaction_id"], idempotency_key=unique("r")), metadata=md),
            lambda: bill.Refund(bpb.RefundRequest(transaction_id="999999999999",
                                                  idempotency_key=unique("r")), metadata=md),
            bravo["transaction_id"], "999999999999")

        ns = names["ns"]
        same_as_missing(lambda: rag.Retrieve(rpb.RetrieveRequest(namespace=ns, query="code"),
                                             metadata=md),
                        lambda: rag.Retrieve(rpb.RetrieveRequest(namespace=ghost, query="code"),
                                             metadata=md), ns, ghost)
        grounded = lambda n: lambda: gen.Generate(gpb.GenerateRequest(  # noqa: E731
            model="sim-chat", messages=[gpb.Message(role="user", content="launch code?")],
            retrieval=gpb.RetrievalOptions(namespace=n)), metadata=md, timeout=10)
        same_as_missing(grounded(ns), grounded(ghost), ns, ghost)
        delete = lambda n: lambda: rag.DeleteDocuments(rpb.DeleteDocumentsRequest(  # noqa: E731
            namespace=n, document_ids=["secret"]), metadata=md)
        same_as_missing(delete(ns), delete(ghost), ns, ghost)

        bot, prompt = names["bot"], names["prompt"]
        by_bot = lambda b: lambda: gen.Generate(gpb.GenerateRequest(  # noqa: E731
            bot=b, messages=[gpb.Message(role="user", content="hi")]), metadata=md, timeout=10)
        same_as_missing(by_bot(bot), by_bot(ghost), bot, ghost)
        for call in (lambda b: lambda: conf.ListBotConfigs(cpb.ListBotConfigsRequest(bot=b),
                                                           metadata=md),
                     lambda b: lambda: conf.ActivateBotConfig(cpb.ActivateBotConfigRequest(
                         bot=b, config_id="1"), metadata=md)):
            same_as_missing(call(bot), call(ghost), bot, ghost)
        for call in (lambda k: lambda: conf.GetPrompt(cpb.GetPromptRequest(key=k), metadata=md),
                     lambda k: lambda: conf.RenderPrompt(cpb.RenderPromptRequest(key=k),
                                                         metadata=md),
                     lambda k: lambda: conf.ActivatePrompt(cpb.ActivatePromptRequest(
                         key=k, version=1), metadata=md)):
            same_as_missing(call(prompt), call(ghost), prompt, ghost)
        by_prompt = lambda k: lambda: gen.Generate(gpb.GenerateRequest(  # noqa: E731
            model="sim-chat", prompt=gpb.PromptOptions(key=k),
            messages=[gpb.Message(role="user", content="hi")]), metadata=md, timeout=10)
        same_as_missing(by_prompt(prompt), by_prompt(ghost), prompt, ghost)

        # Listings show only A's own objects.
        assert bot not in {b.slug for b in conf.ListBots(cpb.ListBotsRequest(),
                                                         metadata=md).bots}
        assert prompt not in {t.key for t in conf.ListPrompts(cpb.ListPromptsRequest(),
                                                              metadata=md).templates}


def test_the_same_names_in_another_tenant_are_separate_objects(gateway, names, bravo):
    """A creating B's names gets its own objects; B's are untouched and unseen."""
    a, b = as_tenant(names["a"]), as_tenant(names["b"])
    wallet, ns = names["wallet"], names["ns"]
    with grpc.insecure_channel(gateway.target) as ch:
        bill = bpb_grpc.BillingServiceStub(ch)
        rag = rpb_grpc.RetrievalServiceStub(ch)
        mine = bill.CreateWallet(bpb.CreateWalletRequest(wallet_id=wallet, currency_code="USD"),
                                 metadata=a)
        assert (mine.wallet_id, mine.balance_micros) == (wallet, 0)
        bill.CreditWallet(bpb.CreditWalletRequest(wallet_id=wallet, amount_micros=500,
                                                  idempotency_key="seed"), metadata=a)
        # The same subject and the same key in both tenants: two charges, no replay.
        charged = bill.Charge(bpb.ChargeRequest(wallet_id=wallet, idempotency_key="k1",
                                                amount_micros=100), metadata=a)
        assert not charged.replayed and charged.transaction_id != bravo["transaction_id"]
        rag.IngestDocuments(rpb.IngestDocumentsRequest(namespace=ns, documents=[rpb.Document(
            id="note", text="Alpha's own note about gardening.")]), metadata=a)
        hits = rag.Retrieve(rpb.RetrieveRequest(namespace=ns, query="launch code", top_k=10),
                            metadata=a)
        assert [c.document_id for c in hits.chunks] == ["note"]

        theirs = bill.GetBalance(bpb.GetBalanceRequest(wallet_id=wallet), metadata=b)
        assert (theirs.balance_micros, theirs.held_micros) == (1_000_000 - 100, 0)
        assert [t.transaction_id for t in bill.ListTransactions(
            bpb.ListTransactionsRequest(wallet_id=wallet), metadata=b).transactions
            if t.kind == bpb.TRANSACTION_KIND_CHARGE] == [bravo["transaction_id"]]
        hits = rag.Retrieve(rpb.RetrieveRequest(namespace=ns, query="launch code", top_k=10),
                            metadata=b)
        assert [c.document_id for c in hits.chunks] == ["secret"]
        assert len(bill.ListBudgets(bpb.ListBudgetsRequest(wallet_id=wallet),
                                    metadata=b).budgets) == 1
        # B's bot still serves B, with B's prompt.
        reply = gpb_grpc.GenerationServiceStub(ch).Generate(gpb.GenerateRequest(
            bot=names["bot"], messages=[gpb.Message(role="user", content="hi")]),
            metadata=b, timeout=10)
        assert reply.prompt.key == names["prompt"] and reply.text


def test_forged_and_malformed_tenant_claims_are_unauthenticated(gateway, names):
    forged = as_tenant(names["b"], secret="not-the-gateway-secret-but-long-enough-x")
    malformed = bearer(*SCOPES, subject=SUBJECT, claims={"tenant": "bravo|evil"})
    with grpc.insecure_channel(gateway.target) as ch:
        bill = bpb_grpc.BillingServiceStub(ch)
        for md in (forged, malformed):
            code, _, _ = status_of(lambda: bill.GetBalance(
                bpb.GetBalanceRequest(wallet_id=names["wallet"]), metadata=md))
            assert code == grpc.StatusCode.UNAUTHENTICATED


def test_a_name_cannot_be_forged_into_another_tenants(gateway, names):
    """The separator is refused in every name, so no default-tenant call reaches B."""
    md = bearer(*SCOPES, subject=SUBJECT)
    with grpc.insecure_channel(gateway.target) as ch:
        code, _, message = status_of(lambda: rpb_grpc.RetrievalServiceStub(ch).Retrieve(
            rpb.RetrieveRequest(namespace=f"{names['b']}|{names['ns']}", query="code"),
            metadata=md))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "namespace" in message
        code, _, _ = status_of(lambda: cpb_grpc.ConfigServiceStub(ch).GetPrompt(
            cpb.GetPromptRequest(key=f"{names['b']}|{names['prompt']}"), metadata=md))
        assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_the_books_balance_after_the_attacks(gateway, pg_url, bravo):
    check = ledger_check(pg_url)
    assert check.returncode == 0, check.stdout


def test_only_the_platform_scope_may_act_in_another_tenant(gateway, names, bravo):
    platform = bearer("admin", "platform:admin", subject="ops", claims={"tenant": "ops"})
    tenant_admin = as_tenant(names["a"])
    request = bpb.GetBalanceRequest(wallet_id=names["wallet"])
    with grpc.insecure_channel(gateway.target) as ch:
        bill = bpb_grpc.BillingServiceStub(ch)
        seen = bill.GetBalance(request, metadata=(*platform, ("x-llmgw-tenant", names["b"])))
        assert seen.wallet_id == names["wallet"] and seen.balance_micros == 1_000_000 - 100
        code, reason, _ = status_of(lambda: bill.GetBalance(
            request, metadata=(*tenant_admin, ("x-llmgw-tenant", names["b"]))))
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE")
        # Without the header the platform operator is in its own tenant like anyone.
        code, _, _ = status_of(lambda: bill.GetBalance(request, metadata=platform))
        assert code == grpc.StatusCode.NOT_FOUND


async def test_a_tenants_own_route_is_invisible_to_other_tenants(gateway, names, pg_url):
    """A route stored for one tenant (``llmgw routes set --tenant``) serves that tenant,
    shadows nothing of anyone else's, and is for every other tenant exactly an unknown
    model; ListModels shows it only to its tenant."""
    route = unique("private")
    engine = create_engine(pg_url, pool_size=1)
    store = RouteStore(engine)
    await store.put(route_from_spec(f"{names['b']}|{route}", {
        "targets": [{"provider": "simulator", "model": "sim-chat"}]}), updated_by="test")
    a, b = as_tenant(names["a"]), as_tenant(names["b"])
    ghost = unique("ghost")
    try:
        async with grpc.aio.insecure_channel(gateway.target) as ch:
            gen = gpb_grpc.GenerationServiceStub(ch)
            ask = lambda model, md: gen.Generate(gpb.GenerateRequest(  # noqa: E731
                model=model, messages=[gpb.Message(role="user", content="hi")]),
                metadata=md, timeout=10)
            for _ in range(50):  # the processes refresh their routes every 0.2 s
                listed = {m.name for m in (await gen.ListModels(gpb.ListModelsRequest(),
                                                                metadata=b)).models}
                if route in listed:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # both workers
            assert (await ask(route, b)).text
            assert route not in {m.name for m in (await gen.ListModels(
                gpb.ListModelsRequest(), metadata=a)).models}
            answers = []
            for model in (route, ghost):
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await ask(model, a)
                answers.append((caught.value.code(), error_info(caught.value).reason,
                                caught.value.details().replace(model, "X")))
            assert answers[0] == answers[1] and answers[0][1] == "UNKNOWN_MODEL"
    finally:
        await store.delete(f"{names['b']}|{route}")
        await engine.dispose()


def test_routes_cli_stores_a_tenants_own_route(pg_url, tmp_path):
    """`llmgw routes set NAME --tenant T` stores T's own route; a separator is refused."""
    import os
    import subprocess
    import sys

    from tests.support.gateway import ROOT

    def llmgw(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "server.cli", "routes", *args], cwd=ROOT,
                              env={**os.environ, "DATABASE_URL": pg_url,
                                   "PYTHONPATH": str(ROOT)},
                              capture_output=True, text=True, timeout=60, check=False)

    name = unique("cli-route")
    spec = '{targets: [{provider: simulator, model: sim-chat}]}'
    stored = llmgw("set", name, "--spec", spec, "--tenant", "acme")
    assert stored.returncode == 0, stored.stderr
    assert f"acme|{name}" in llmgw("list").stdout
    assert llmgw("set", f"acme|{name}", "--spec", spec).returncode == 2
    assert llmgw("delete", name, "--tenant", "acme").returncode == 0
