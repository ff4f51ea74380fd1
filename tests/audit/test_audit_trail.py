"""The audit trail through the real gateway and Postgres: every change leaves exactly one
event saying who, when, what and what it was before; failures and replays leave none;
the listing pages, filters and keeps tenants apart; `llmgw routes` records its changes
and `llmgw audit` prints them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import json_format, timestamp_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from llmgateway.v1 import audit_pb2 as pb
from llmgateway.v1 import audit_pb2_grpc as pb_grpc
from llmgateway.v1 import billing_pb2 as bpb
from llmgateway.v1 import billing_pb2_grpc as bpb_grpc
from llmgateway.v1 import config_pb2 as cpb
from llmgateway.v1 import config_pb2_grpc as cpb_grpc

from server.cli import main
from tests.support.gateway import ROOT, bearer

PLATFORM = bearer("audit:read", "platform:admin", subject="auditor")
CONF = "/llmgateway.v1.ConfigService/"
BILL = "/llmgateway.v1.BillingService/"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def stamp(value: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


@pytest.fixture
def audit(channel: grpc.aio.Channel) -> pb_grpc.AuditServiceStub:
    return pb_grpc.AuditServiceStub(channel)


@pytest.fixture
def config(channel: grpc.aio.Channel) -> cpb_grpc.ConfigServiceStub:
    return cpb_grpc.ConfigServiceStub(channel)


@pytest.fixture
def billing(channel: grpc.aio.Channel) -> bpb_grpc.BillingServiceStub:
    return bpb_grpc.BillingServiceStub(channel)


@pytest.fixture
def since() -> timestamp_pb2.Timestamp:
    """The test's start (with slack): listings ignore what earlier tests recorded."""
    return stamp(datetime.now(UTC) - timedelta(seconds=2))


async def listed(audit: pb_grpc.AuditServiceStub, md=PLATFORM, **filters) -> list[pb.AuditEvent]:
    """Every event the filters select, all pages, newest first."""
    events, token = [], ""
    while True:
        page = await audit.ListAuditEvents(pb.ListAuditEventsRequest(
            page_size=500, page_token=token, **filters), metadata=md)
        events += page.audit_events
        token = page.next_page_token
        if not token:
            return events


def about(events: list[pb.AuditEvent], object_id: str) -> list[pb.AuditEvent]:
    return [e for e in events if e.object_id == object_id]


def as_dict(struct) -> dict:
    return json_format.MessageToDict(struct)


def bad_request(error: grpc.aio.AioRpcError) -> tuple[str, list[str]]:
    """ErrorInfo reason and the BadRequest field names of a failed call."""
    status = status_pb2.Status.FromString(dict(error.trailing_metadata())["grpc-status-details-bin"])
    reason, fields = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return reason, fields


async def test_prompt_activation_shows_the_version_before_and_after(audit, config, since):
    key, who = unique("greet"), unique("svc")
    admin = bearer("admin", subject=who)
    await config.CreatePromptVersion(cpb.CreatePromptVersionRequest(
        template=cpb.PromptTemplate(key=key, system="Hello {{name}}"), activate=True),
        metadata=admin)
    await config.CreatePromptVersion(cpb.CreatePromptVersionRequest(
        template=cpb.PromptTemplate(key=key, system="Hi {{name}}!")), metadata=admin)
    call = config.ActivatePrompt(cpb.ActivatePromptRequest(key=key, version=2), metadata=admin)
    await call
    trace_id = dict(await call.trailing_metadata())["x-trace-id"]

    events = about(await listed(audit, start_time=since, kind="prompt", tenant="default"), key)
    assert [e.method for e in events] == [CONF + "ActivatePrompt", CONF + "CreatePromptVersion",
                                          CONF + "CreatePromptVersion"]
    activation = events[0]
    assert (activation.service, activation.tenant, activation.kind) == (who, "default", "prompt")
    assert activation.trace_id == trace_id
    assert (as_dict(activation.before)["version"], as_dict(activation.before)["active"]) == (1, True)
    assert (as_dict(activation.after)["version"], as_dict(activation.after)["active"]) == (2, True)
    assert as_dict(activation.request) == {"key": key, "version": 2}
    assert not events[1].HasField("before")  # v2 was not activated: nothing replaced
    assert not events[2].HasField("before")  # v1: no version was active before
    assert as_dict(events[2].after)["version"] == 1
    assert events[0].create_time.ToDatetime() >= events[2].create_time.ToDatetime()


async def test_bots_and_bot_configs_are_recorded(audit, config, since):
    slug, admin = unique("bot"), bearer("admin", subject=unique("svc"))
    await config.CreateBot(cpb.CreateBotRequest(bot=cpb.Bot(slug=slug, name="Bot")),
                           metadata=admin)
    a = await config.CreateBotConfig(cpb.CreateBotConfigRequest(config=cpb.BotConfig(
        bot=slug, provider="simulator", model="sim-chat"), activate=True), metadata=admin)
    b = await config.CreateBotConfig(cpb.CreateBotConfigRequest(config=cpb.BotConfig(
        bot=slug, provider="simulator", model="sim-fast")), metadata=admin)
    await config.ActivateBotConfig(cpb.ActivateBotConfigRequest(bot=slug, config_id=b.config_id),
                                   metadata=admin)

    bots = about(await listed(audit, start_time=since, kind="bot"), slug)
    assert [(e.method, as_dict(e.after)["name"]) for e in bots] == [(CONF + "CreateBot", "Bot")]
    configs = await listed(audit, start_time=since, kind="bot_config")
    switch = about(configs, b.config_id)
    assert [e.method for e in switch] == [CONF + "ActivateBotConfig", CONF + "CreateBotConfig"]
    assert int(as_dict(switch[0].before)["id"]) == int(a.config_id)
    assert (as_dict(switch[0].after)["config_id"], as_dict(switch[0].after)["active"]) == \
        (b.config_id, True)
    assert [e.method for e in about(configs, a.config_id)] == [CONF + "CreateBotConfig"]


async def test_wallet_and_budget_changes_show_what_they_replaced(audit, billing, since):
    wallet, who = unique("w"), unique("svc")
    admin = bearer("billing:admin", "billing:charge", subject=who)
    await billing.CreateWallet(bpb.CreateWalletRequest(wallet_id=wallet, currency_code="USD"),
                               metadata=admin)
    credit = bpb.CreditWalletRequest(wallet_id=wallet, amount_micros=10_000,
                                     idempotency_key="seed")
    await billing.CreditWallet(credit, metadata=admin)
    assert (await billing.CreditWallet(credit, metadata=admin)).replayed  # changes nothing
    charge = await billing.Charge(bpb.ChargeRequest(wallet_id=wallet, idempotency_key="c",
                                                    amount_micros=400), metadata=admin)
    await billing.Refund(bpb.RefundRequest(transaction_id=charge.transaction_id,
                                           idempotency_key="r"), metadata=admin)
    for limit in (1_000, 2_000, 0):  # create, replace, remove
        await billing.SetBudget(bpb.SetBudgetRequest(
            wallet_id=wallet, period=bpb.BUDGET_PERIOD_DAY, metric=bpb.BUDGET_METRIC_TOKENS,
            limit=limit), metadata=admin)

    money = about(await listed(audit, start_time=since, kind="wallet"), wallet)
    assert [e.method.rsplit("/", 1)[1] for e in money] == ["Refund", "CreditWallet",
                                                           "CreateWallet"]
    assert {e.service for e in money} == {who}
    refund, credited, created = money
    assert as_dict(credited.before)["balance"] == 0
    assert as_dict(credited.after)["balance_after_micros"] == "10000"
    assert as_dict(credited.request)["idempotency_key"] == "seed"
    assert as_dict(refund.before)["balance"] == 9_600
    assert as_dict(refund.after)["balance_after_micros"] == "10000"
    assert not created.HasField("before") and as_dict(created.after)["wallet_id"] == wallet

    budget = about(await listed(audit, start_time=since, kind="budget"), f"{wallet}/day/tokens")
    assert [as_dict(e.request)["limit"] for e in budget] == ["0", "2000", "1000"]
    assert [as_dict(e.before).get("limit_value") if e.HasField("before") else None
            for e in budget] == [2_000, 1_000, None]


async def test_failed_calls_leave_no_event(audit, config, billing, since):
    key, wallet = unique("never"), unique("w")
    admin = bearer("admin")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await config.ActivatePrompt(cpb.ActivatePromptRequest(key=key, version=0),
                                    metadata=admin)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await config.ActivatePrompt(cpb.ActivatePromptRequest(key=key, version=3),
                                    metadata=admin)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    await billing.CreateWallet(bpb.CreateWalletRequest(wallet_id=wallet, currency_code="USD"),
                               metadata=admin)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await billing.SetBudget(bpb.SetBudgetRequest(wallet_id=wallet, limit=5), metadata=admin)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT

    events = await listed(audit, start_time=since)
    assert about(events, key) == []
    assert [e.method for e in events if wallet in e.object_id] == [BILL + "CreateWallet"]


async def test_listing_pages_newest_first_and_filters(audit, config):
    tenant = unique("tp")  # a fresh tenant: its listing holds exactly this test's events
    admin = bearer("admin", claims={"tenant": tenant})
    reader = bearer("audit:read", claims={"tenant": tenant})
    bots = [unique("b") for _ in range(5)]
    for slug in bots:
        await config.CreateBot(cpb.CreateBotRequest(bot=cpb.Bot(slug=slug, name=slug)),
                               metadata=admin)
    pages, token = [], ""
    while True:
        page = await audit.ListAuditEvents(pb.ListAuditEventsRequest(
            page_size=2, page_token=token), metadata=reader)
        pages.append([e.object_id for e in page.audit_events])
        token = page.next_page_token
        if not token:
            break
    assert pages == [bots[:2:-1], bots[2:0:-1], bots[:1]]

    events = await listed(audit, reader)
    assert [int(e.event_id) for e in events] == sorted((int(e.event_id) for e in events),
                                                       reverse=True)
    third = events[2].create_time
    later = await listed(audit, reader, start_time=third)
    earlier = await listed(audit, reader, end_time=third)
    assert [e.object_id for e in later] == bots[:1:-1]
    assert [e.object_id for e in earlier] == bots[1::-1]
    assert await listed(audit, reader, kind="wallet") == []
    assert len(await listed(audit, reader, kind="bot")) == 5


@pytest.mark.parametrize(("request_fields", "field"), [
    ({"start_time": stamp(datetime(2026, 12, 2, tzinfo=UTC)),
      "end_time": stamp(datetime(2026, 12, 1, tzinfo=UTC))}, "end_time"),
    ({"page_token": "not-a-token"}, "page_token"),
    ({"kind": "wallets"}, "kind"),
    ({"page_size": -1}, "page_size"),
])
async def test_bad_listings_name_the_field(audit, request_fields, field):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await audit.ListAuditEvents(pb.ListAuditEventsRequest(**request_fields),
                                    metadata=PLATFORM)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad_request(caught.value) == ("INVALID_ARGUMENT", [field])


async def test_a_page_token_only_continues_its_own_listing(audit, billing):
    admin = bearer("billing:admin")
    for _ in range(2):
        await billing.CreateWallet(bpb.CreateWalletRequest(wallet_id=unique("w"),
                                                           currency_code="USD"), metadata=admin)
    first = await audit.ListAuditEvents(pb.ListAuditEventsRequest(page_size=1, kind="wallet"),
                                        metadata=PLATFORM)
    assert first.next_page_token
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await audit.ListAuditEvents(pb.ListAuditEventsRequest(
            page_size=1, kind="budget", page_token=first.next_page_token), metadata=PLATFORM)
    assert bad_request(caught.value) == ("INVALID_ARGUMENT", ["page_token"])


async def test_tenants_see_only_their_own_events(audit, config, since):
    ta, tb = unique("ta"), unique("tb")
    wa, wb = unique("b"), unique("b")
    for tenant, slug in ((ta, wa), (tb, wb)):
        await config.CreateBot(cpb.CreateBotRequest(bot=cpb.Bot(slug=slug, name=slug)),
                               metadata=bearer("admin", claims={"tenant": tenant}))
    for scopes in (("audit:read",), ("admin",)):  # a tenant's admin is not the platform's
        mine = await listed(audit, bearer(*scopes, claims={"tenant": ta}), start_time=since)
        assert [(e.tenant, e.object_id) for e in mine] == [(ta, wa)]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await audit.ListAuditEvents(pb.ListAuditEventsRequest(tenant=tb),
                                    metadata=bearer("audit:read", claims={"tenant": ta}))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert bad_request(caught.value)[0] == "MISSING_SCOPE"

    everyone = await listed(audit, start_time=since)
    assert {(e.tenant, e.object_id) for e in everyone} >= {(ta, wa), (tb, wb)}
    only_b = await listed(audit, tenant=tb)
    assert [(e.tenant, e.object_id) for e in only_b] == [(tb, wb)]


async def test_a_tenants_events_name_its_objects_as_it_does(audit, config):
    tenant, key = unique("tc"), unique("greet")
    admin = bearer("admin", claims={"tenant": tenant})
    for activate in (True, False):
        await config.CreatePromptVersion(cpb.CreatePromptVersionRequest(
            template=cpb.PromptTemplate(key=key, system="Hi"), activate=activate),
            metadata=admin)
    await config.ActivatePrompt(cpb.ActivatePromptRequest(key=key, version=2), metadata=admin)
    events = await listed(audit, bearer("audit:read", claims={"tenant": tenant}))
    assert [(e.tenant, e.object_id) for e in events] == [(tenant, key)] * 3
    before, after = as_dict(events[0].before), as_dict(events[0].after)
    assert (before["key"], before["version"], after["key"], after["version"]) == \
        (key, 1, key, 2)


async def test_a_platform_admin_acting_in_a_tenant_is_recorded_there(audit, config):
    tenant, slug, who = unique("tx"), unique("b"), unique("ops")
    acting = (*bearer("admin", "platform:admin", subject=who), ("x-llmgw-tenant", tenant))
    await config.CreateBot(cpb.CreateBotRequest(bot=cpb.Bot(slug=slug, name=slug)),
                           metadata=acting)
    events = await listed(audit, acting)  # no filter: the tenant it acts in
    assert [(e.tenant, e.service, e.object_id) for e in events] == [(tenant, who, slug)]


async def test_listing_needs_the_audit_scope(audit):
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await audit.ListAuditEvents(pb.ListAuditEventsRequest(), metadata=bearer("generate"))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_reflection_lists_the_audit_service(channel):
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]))
    names = [s.name async for r in responses for s in r.list_services_response.service]
    assert "llmgateway.v1.AuditService" in names


def llmgw(pg_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], cwd=ROOT,
                          env={**os.environ, "DATABASE_URL": pg_url, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60, check=False)


async def test_route_changes_are_recorded_and_llmgw_audit_prints_them(audit, pg_url):
    name = unique("alias")
    started = datetime.now(UTC) - timedelta(seconds=2)
    spec = "{targets: [{provider: simulator, model: sim-chat}]}"
    assert llmgw(pg_url, "routes", "set", name, "--spec", spec).returncode == 0
    assert llmgw(pg_url, "routes", "delete", name).returncode == 0

    routes = about(await listed(audit, start_time=stamp(started), kind="route"), name)
    assert [e.method for e in routes] == ["llmgw routes delete", "llmgw routes set"]
    deleted, stored = routes
    assert stored.service.startswith("cli:") and stored.tenant == "default"
    assert not stored.HasField("before")
    assert as_dict(stored.after)["targets"][0]["model"] == "sim-chat"
    assert as_dict(deleted.before) == as_dict(stored.after) and not deleted.HasField("after")

    printed = llmgw(pg_url, "audit", "--kind", "route", "--since", started.isoformat(),
                    "--limit", "50")
    assert printed.returncode == 0, printed.stderr
    lines = [line for line in printed.stdout.splitlines() if name in line]
    assert len(lines) == 2 and "llmgw routes delete" in lines[0]
    assert "llmgw routes set" in lines[1] and "route" in lines[1]
    assert printed.stdout.splitlines()[0].split() == ["TIME", "(UTC)", "TENANT", "SERVICE",
                                                      "KIND", "OBJECT", "METHOD"]


def test_llmgw_audit_checks_its_arguments_before_the_database(
        capsys: pytest.CaptureFixture[str]) -> None:
    for args, message in ((["--kind", "wallets"], "--kind: one of prompt"),
                          (["--since", "yesterday"], "--since 'yesterday'"),
                          (["--limit", "0"], "--limit must be positive")):
        started = time.monotonic()
        with pytest.raises(SystemExit) as caught:
            main(["audit", *args])
        assert message in str(caught.value.code)
        assert time.monotonic() - started < 5
