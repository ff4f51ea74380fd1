"""The audit trail's rules that need no database: what an event may hold (bounded, no
secrets), page tokens that only continue the listing they came from, and a failed write
that is counted and logged in full rather than lost or raised."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import pytest

from server.audit.events import MAX_JSON_BYTES, REDACTED, AuditEvent, bounded
from server.audit.query import AuditQuery
from server.audit.recorder import AuditRecorder
from server.kernel.errors import GatewayError


def test_secret_looking_keys_lose_their_values_at_any_depth() -> None:
    value = {"metadata": {"apiKey": "sk-123", "region_name": "eu", "nested": [
        {"client_secret": "s", "Authorization": "Bearer x", "max_output_tokens": 5}]},
        "idempotency_key": "k1"}
    assert bounded(value) == {"metadata": {"apiKey": REDACTED, "region_name": "eu", "nested": [
        {"client_secret": REDACTED, "Authorization": REDACTED, "max_output_tokens": 5}]},
        "idempotency_key": "k1"}


def test_huge_json_becomes_a_marker_with_its_size() -> None:
    small = {"system": "x" * 100}
    assert bounded(small) == small
    marker = bounded({"system": "x" * (MAX_JSON_BYTES + 1)})
    assert marker is not None and marker["truncated"] is True
    assert marker["bytes"] > MAX_JSON_BYTES
    assert bounded(None) is None


def violations(query: AuditQuery) -> dict[str, str]:
    with pytest.raises(GatewayError) as caught:
        query.check()
    return {v.field: v.description for v in caught.value.violations}


def test_every_bad_filter_is_named_at_once() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    bad = violations(AuditQuery(tenant="no spaces!", kind="wallets", start=t0, end=t0,
                                page_size=-1, page_token="%%%"))
    assert set(bad) == {"tenant", "kind", "end_time", "page_size", "page_token"}
    assert bad["end_time"] == "must be after start_time"


def test_a_page_token_continues_only_the_listing_it_came_from() -> None:
    query = AuditQuery(tenant="acme", kind="wallet")
    token = query.next_token(42)
    same = AuditQuery(tenant="acme", kind="wallet", page_token=token)
    same.check()
    assert same.before_id() == 42
    assert "page_token" in violations(AuditQuery(tenant="acme", kind="bot", page_token=token))
    assert "page_token" in violations(AuditQuery(tenant=None, kind="wallet", page_token=token))
    assert AuditQuery(page_size=10_000).size == 500 and AuditQuery().size == 50


class _BrokenStore:
    async def append(self, event: AuditEvent) -> int:
        raise ConnectionError("database away")


async def test_a_failed_write_is_counted_and_logged_in_full_never_raised(
        caplog: pytest.LogCaptureFixture) -> None:
    outcomes: list[str] = []
    recorder = AuditRecorder(_BrokenStore(), on_outcome=outcomes.append)  # type: ignore[arg-type]
    event = AuditEvent(tenant="default", service="svc", kind="wallet", method="/x/CreditWallet",
                       object_id="w1", request={"wallet_id": "w1", "password": "hunter2"})
    with caplog.at_level(logging.ERROR, logger="llmgw.audit"):
        assert await recorder.record(event) is False
    assert outcomes == ["failed"]
    logged = caplog.records[-1].getMessage()
    assert "ConnectionError" in logged and '"object_id": "w1"' in logged
    assert "hunter2" not in logged
    assert json.loads(logged.split("the event: ", 1)[1])["request"]["password"] == REDACTED
