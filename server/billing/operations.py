"""The unit of work of the ledger: one operation, its request fingerprint and its result.

An ``Operation`` is what ``ledger_apply`` (the stored function, see migration 0002)
executes; the writer batches many of them into one statement. Keeping it a plain frozen
dataclass lets the property tests and the benchmark drive the ledger without gRPC.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import Enum
from typing import Any


class Kind(str, Enum):
    CREDIT = "credit"
    CHARGE = "charge"
    HOLD = "hold"
    SETTLE = "settle"
    VOID = "void"
    EXPIRE = "expire"
    REFUND = "refund"


class Status(str, Enum):
    """What ``ledger_apply`` reported for one operation."""

    OK = "ok"
    KEY_REUSED = "key_reused"
    WALLET_NOT_FOUND = "wallet_not_found"
    TRANSACTION_NOT_FOUND = "transaction_not_found"
    CURRENCY_MISMATCH = "currency_mismatch"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    HOLD_CLOSED = "hold_closed"
    EXCEEDS_HOLD = "exceeds_hold"
    ALREADY_REFUNDED = "already_refunded"


def request_hash(kind: Kind, body: dict[str, Any]) -> str:
    """A stable fingerprint of what the caller asked for: a replay must match it exactly,
    so the same idempotency key with a different body is detected, not silently replayed."""
    canonical = json.dumps({"kind": kind.value, **body}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """The replay fingerprint of a caller-defined request identity, independent of the
    operation kind: a generation's charge may be posted by settling its hold or, when the
    hold is gone, by a direct charge, and a retry must replay either."""
    canonical = json.dumps({"fingerprint": fingerprint}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Operation:
    """One money movement. ``amount`` is in micro-units and never negative here; the
    direction follows from ``kind``. ``ref`` names the hold (settle/void/expire) or the
    charge (refund). ``key`` is None only for the sweeper's expiries."""

    kind: Kind
    scope: str
    key: str | None
    body_hash: str | None
    wallet_id: str | None
    amount: int = 0
    ref: int | None = None
    currency_code: str = ""
    description: str = ""
    ttl_ms: int = 0


@dataclass(frozen=True)
class Result:
    """The outcome of one operation. ``amount`` and ``held`` are the signed effects on the
    wallet's posted balance and on its pending sum; ``replayed`` marks an idempotent replay."""

    status: Status
    transaction_id: int | None = None
    amount: int = 0
    balance_after: int = 0
    held: int = 0
    replayed: bool = False

    @property
    def ok(self) -> bool:
        return self.status is Status.OK
