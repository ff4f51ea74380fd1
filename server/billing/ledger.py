"""The ledger's API for the rest of the gateway: wallets, credits, charges, holds, refunds.

Every method validates its input (INVALID_ARGUMENT naming the field), turns the call into
an ``Operation`` with a fingerprint of the request, hands it to the ``LedgerWriter`` and
maps the stored function's status to a domain error. Money is only ever moved inside
``ledger_apply``; nothing here reads a balance and writes it back.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from server.billing.operations import (
    Kind,
    Operation,
    Result,
    Status,
    fingerprint_hash,
    request_hash,
)
from server.billing.pricing import Metered, Price, PriceList, cost_micros
from server.billing.sessions import SessionPrices
from server.billing.validation import Checks
from server.billing.writer import LedgerWriter
from server.kernel.errors import Fault, FieldViolation, GatewayError, bad_field


@dataclass(frozen=True)
class Wallet:
    wallet_id: str
    currency_code: str
    balance: int
    held: int
    overdraft_limit: int
    created_at: datetime

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True)
class Posted:
    """A completed money movement (or the replay of one)."""

    transaction_id: int
    amount: int          # signed effect on the wallet's posted balance
    balance_after: int
    held: int = 0        # signed effect on the wallet's held amount (holds only)
    replayed: bool = False
    currency_code: str = ""


@dataclass(frozen=True)
class TransactionView:
    transaction_id: int
    kind: str
    amount: int  # signed effect on the posted balance (holds, voids: on the held amount)
    description: str
    created_at: datetime


@dataclass(frozen=True)
class Page:
    transactions: list[TransactionView]
    next_page_token: str


class HoldClosed(GatewayError):
    """The hold was already settled, voided or expired: callers that may race the sweeper
    (settling a call that outlived its hold) catch this type, never compare reasons."""


class KeyReused(GatewayError):
    """The idempotency key was already used by a different request."""


class InsufficientFunds(GatewayError):
    """The wallet's available balance (and overdraft) cannot cover the amount."""


def ledger_error(result: Result, key: str | None) -> GatewayError:
    """The domain error for a failed operation."""
    s = result.status
    if s is Status.KEY_REUSED:
        return KeyReused(Fault.CONFLICT, "IDEMPOTENCY_KEY_REUSED",
                            "this idempotency key was already used with a different request",
                            violations=[FieldViolation("idempotency_key",
                                                       "already used with a different request")],
                            metadata={"idempotency_key": key or "",
                                      "transaction_id": str(result.transaction_id or "")})
    if s is Status.WALLET_NOT_FOUND:
        return GatewayError(Fault.NOT_FOUND, "WALLET_NOT_FOUND", "no such wallet",
                            violations=[FieldViolation("wallet_id", "no such wallet")])
    if s is Status.TRANSACTION_NOT_FOUND:
        return GatewayError(Fault.NOT_FOUND, "NOT_FOUND", "no such transaction",
                            violations=[FieldViolation("transaction_id", "no such transaction")])
    if s is Status.CURRENCY_MISMATCH:
        return GatewayError(Fault.REFUSED, "CURRENCY_MISMATCH",
                            "the currency differs from the wallet's",
                            violations=[FieldViolation("currency_code",
                                                       "differs from the wallet's currency")])
    if s is Status.INSUFFICIENT_FUNDS:
        return InsufficientFunds(Fault.REFUSED, "INSUFFICIENT_FUNDS",
                            "the wallet's available balance cannot cover the amount")
    if s is Status.ALREADY_REFUNDED:
        return GatewayError(Fault.REFUSED, "ALREADY_REFUNDED",
                            "this charge has already been refunded",
                            violations=[FieldViolation("transaction_id", "already refunded")])
    if s is Status.HOLD_CLOSED:
        return HoldClosed(Fault.REFUSED, "HOLD_CLOSED",
                            "the hold was already settled, voided or expired")
    if s is Status.EXCEEDS_HOLD:
        return bad_field("amount_micros", "must not exceed the amount held")
    return GatewayError(Fault.BUG, "INTERNAL", f"unexpected ledger status {s.value}")


def _page_token(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"t{last_id}".encode()).decode().rstrip("=")


def _parse_page_token(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not raw.startswith("t"):
            raise ValueError(token)
        return int(raw[1:])
    except ValueError:
        raise bad_field("page_token", "not a token from a previous response") from None


_HOLD_KINDS = ("hold", "void", "expire")
_KIND_FILTER = {"charge": ("charge", "settle"), "credit": ("credit",),
                "refund": ("refund",), "hold": ("hold", "void", "expire")}


class Ledger:
    """Wallets and money movements over one Postgres database (any number of processes)."""

    def __init__(self, pool: asyncpg.Pool, writer: LedgerWriter, prices: PriceList) -> None:
        self._pool = pool
        self._writer = writer
        self.prices = prices
        self._sessions = SessionPrices(pool)

    async def _submit(self, op: Operation) -> Posted:
        result = await self._writer.submit(op)
        if not result.ok:
            raise ledger_error(result, op.key)
        assert result.transaction_id is not None
        return Posted(result.transaction_id, result.amount, result.balance_after, result.held,
                      result.replayed, op.currency_code)

    # -- wallets ---------------------------------------------------------------------

    async def create_wallet(self, wallet_id: str, currency_code: str,
                            overdraft_limit: int = 0) -> Wallet:
        """Open a wallet. Creating the same wallet again is a no-op; a different one under
        an existing id is ALREADY_EXISTS."""
        checks = Checks()
        checks.wallet_id(wallet_id)
        checks.currency(currency_code, required=True)
        if overdraft_limit < 0:
            checks.fail("overdraft_limit_micros", "must not be negative")
        checks.raise_if_any()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO ledger_accounts (id, kind, currency_code) "
                "SELECT 'system:' || r || ':' || $1, 'system', $1 "
                "FROM unnest(ARRAY['revenue', 'topup', 'promo']) AS r ON CONFLICT DO NOTHING",
                currency_code)
            await conn.execute(
                "INSERT INTO ledger_accounts (id, kind, currency_code, overdraft_limit) "
                "VALUES ($1, 'wallet', $2, $3) ON CONFLICT DO NOTHING",
                wallet_id, currency_code, overdraft_limit)
        wallet = await self.wallet(wallet_id)
        if (wallet.currency_code, wallet.overdraft_limit) != (currency_code, overdraft_limit):
            raise GatewayError(Fault.CONFLICT, "WALLET_ALREADY_EXISTS",
                               "a different wallet with this id already exists",
                               violations=[FieldViolation("wallet_id", "already exists")])
        return wallet

    async def wallet(self, wallet_id: str) -> Wallet:
        checks = Checks()
        checks.wallet_id(wallet_id)
        checks.raise_if_any()
        row = await self._pool.fetchrow(
            "SELECT id, currency_code, balance, pending, overdraft_limit, created_at "
            "FROM ledger_accounts WHERE id = $1 AND kind = 'wallet'", wallet_id)
        if row is None:
            raise GatewayError(Fault.NOT_FOUND, "WALLET_NOT_FOUND", "no such wallet",
                               violations=[FieldViolation("wallet_id", "no such wallet")])
        return Wallet(row["id"], row["currency_code"], row["balance"], -row["pending"],
                      row["overdraft_limit"], row["created_at"])

    async def wallet_of(self, transaction_id: int) -> str | None:
        """The wallet a transaction moved (None: no such transaction), so the caller can
        check whose it is before acting on it."""
        return await self._pool.fetchval(
            "SELECT wallet_id FROM ledger_transactions WHERE id = $1", transaction_id)

    # -- money movements -------------------------------------------------------------

    async def credit(self, scope: str, wallet_id: str, key: str, amount: int,
                     currency_code: str = "", description: str = "") -> Posted:
        checks = Checks()
        checks.wallet_id(wallet_id)
        checks.idempotency_key(key)
        checks.amount(amount)
        checks.currency(currency_code)
        checks.description(description)
        checks.raise_if_any()
        body = {"wallet_id": wallet_id, "amount": amount, "currency_code": currency_code,
                "description": description}
        return await self._submit(Operation(Kind.CREDIT, scope, key,
                                            request_hash(Kind.CREDIT, body), wallet_id, amount,
                                            currency_code=currency_code,
                                            description=description))

    async def price_for(self, model: str, wallet_id: str, session_id: str = "",
                        field: str = "usage.model", default: Price | None = None) -> Price:
        """The price that applies: the session's locked snapshot, else the price list's
        (``default`` for models the list does not price)."""
        current = self.prices.get(model) or default
        if session_id:
            return await self._sessions.locked_price(session_id, wallet_id, model, current,
                                                     field)
        if current is None:
            raise bad_field(field, f"model {model!r} has no price")
        return current

    async def session_prices(self, session_id: str, wallet_id: str,
                             current: dict[str, Price]) -> dict[str, Price]:
        """``current`` (target key → price) as locked by the session (unchanged without
        one): a session keeps the prices of every target it started with."""
        if not session_id:
            return current
        return await self._sessions.locked_prices(session_id, wallet_id, current)

    async def replay_of(self, scope: str, key: str,
                        fingerprint: dict[str, Any]) -> Posted | None:
        """The transaction already made under ``key``, if any (a replay), so a caller can
        learn *before* doing paid work that its key is taken: ALREADY_EXISTS when it was
        made by a different request."""
        row = await self._pool.fetchrow(
            "SELECT id, request_hash, amount, balance_after, held FROM ledger_transactions "
            "WHERE scope = $1 AND idempotency_key = $2", scope, key)
        if row is None:
            return None
        if row["request_hash"] != fingerprint_hash(fingerprint):
            raise ledger_error(Result(Status.KEY_REUSED, row["id"]), key)
        return Posted(row["id"], row["amount"], row["balance_after"], row["held"],
                      replayed=True)

    async def charge(self, scope: str, wallet_id: str, key: str, *, amount: int | None = None,
                     usage: Metered | None = None, model: str = "", currency_code: str = "",
                     session_id: str = "", description: str = "",
                     fingerprint: dict[str, Any] | None = None) -> Posted:
        """Debit a wallet: ``amount`` micro-units, or the cost of ``usage`` of ``model`` at
        the session's locked price (or the current price when there is no session)."""
        checks = Checks()
        checks.wallet_id(wallet_id)
        checks.idempotency_key(key)
        checks.currency(currency_code)
        checks.description(description)
        if len(session_id) > 128:
            checks.fail("session_id", "at most 128 characters")
        body: dict[str, Any] = {"wallet_id": wallet_id, "currency_code": currency_code,
                                "session_id": session_id, "description": description}
        if (amount is None) == (usage is None):
            checks.fail("amount", "set exactly one of amount_micros and usage")
        elif amount is not None:
            checks.amount(amount)
            body["amount"] = amount
        else:
            assert usage is not None
            if not model:
                checks.fail("usage.model", "required")
            for name in ("input_tokens", "output_tokens", "cached_input_tokens"):
                if getattr(usage, name) < 0:
                    checks.fail(f"usage.{name}", "must not be negative")
            if usage.cached_input_tokens > usage.input_tokens:
                checks.fail("usage.cached_input_tokens", "must not exceed input_tokens")
            body["usage"] = {"model": model, "input": usage.input_tokens,
                             "output": usage.output_tokens,
                             "cached": usage.cached_input_tokens}
        checks.raise_if_any()
        if usage is not None:
            price = await self.price_for(model, wallet_id, session_id)
            if currency_code and currency_code != price.currency_code:
                raise ledger_error(Result(Status.CURRENCY_MISMATCH), key)
            currency_code = price.currency_code
            amount = cost_micros(price, usage)
        assert amount is not None
        body_hash = (fingerprint_hash(fingerprint) if fingerprint
                     else request_hash(Kind.CHARGE, body))
        return await self._submit(Operation(Kind.CHARGE, scope, key, body_hash, wallet_id, amount,
                                            currency_code=currency_code,
                                            description=description))

    async def hold(self, scope: str, wallet_id: str, key: str, amount: int, ttl_s: float,
                   currency_code: str = "", description: str = "",
                   fingerprint: dict[str, Any] | None = None) -> Posted:
        """Reserve ``amount`` (a pending transfer) until settled, voided or expired.
        ``fingerprint`` replaces the request body in the replay check when the caller's
        notion of "the same request" is narrower than the arguments."""
        checks = Checks()
        checks.wallet_id(wallet_id)
        checks.idempotency_key(key)
        if amount < 0:
            checks.fail("amount_micros", "must not be negative")
        if ttl_s <= 0:
            checks.fail("ttl_s", "must be positive")
        checks.raise_if_any()
        body = {"wallet_id": wallet_id, "amount": amount, "currency_code": currency_code,
                "description": description}
        body_hash = fingerprint_hash(fingerprint) if fingerprint else request_hash(Kind.HOLD, body)
        return await self._submit(Operation(Kind.HOLD, scope, key, body_hash, wallet_id, amount,
                                            currency_code=currency_code,
                                            description=description, ttl_ms=int(ttl_s * 1000)))

    async def settle(self, scope: str, hold_id: int, key: str, amount: int,
                     description: str = "", fingerprint: dict[str, Any] | None = None) -> Posted:
        """Post ``amount`` against a hold and release the rest. Beyond the hold, the excess
        is taken from what the wallet can still pay (available balance and overdraft) in
        the same operation; the returned amount is what was posted, which is less than
        ``amount`` only when even that could not cover it."""
        checks = Checks()
        checks.idempotency_key(key)
        if amount < 0:
            checks.fail("amount_micros", "must not be negative")
        checks.raise_if_any()
        body = {"hold_id": hold_id, "amount": amount, "description": description}
        body_hash = (fingerprint_hash(fingerprint) if fingerprint
                     else request_hash(Kind.SETTLE, body))
        return await self._submit(Operation(Kind.SETTLE, scope, key, body_hash, None, amount,
                                            ref=hold_id, description=description))

    async def void(self, scope: str, hold_id: int, key: str, description: str = "") -> Posted:
        """Release a hold entirely."""
        checks = Checks()
        checks.idempotency_key(key)
        checks.raise_if_any()
        body = {"hold_id": hold_id, "description": description}
        return await self._submit(Operation(Kind.VOID, scope, key,
                                            request_hash(Kind.VOID, body), None, ref=hold_id,
                                            description=description))

    async def refund(self, scope: str, transaction_id: int, key: str,
                     reason: str = "") -> Posted:
        """Reverse a charge in full, at most once."""
        checks = Checks()
        checks.idempotency_key(key)
        checks.description(reason, "reason")
        checks.raise_if_any()
        body = {"transaction_id": transaction_id, "reason": reason}
        return await self._submit(Operation(Kind.REFUND, scope, key,
                                            request_hash(Kind.REFUND, body), None,
                                            ref=transaction_id, description=reason))

    async def expire_due(self, limit: int = 500) -> int:
        """Release holds whose time is up (the sweeper's job); returns how many."""
        rows = await self._pool.fetch(
            "SELECT hold_id FROM ledger_open_holds WHERE expires_at <= now() "
            "ORDER BY expires_at LIMIT $1", limit)
        results = await asyncio.gather(*(self._writer.submit(Operation(
            Kind.EXPIRE, "system:sweeper", None, None, None, ref=row["hold_id"],
            description="hold expired")) for row in rows))  # submitted together: one batch
        return sum(result.ok for result in results)

    # -- reading ---------------------------------------------------------------------

    async def transactions(self, wallet_id: str, *, page_size: int = 50, page_token: str = "",
                           kind: str = "", start: datetime | None = None,
                           end: datetime | None = None) -> Page:
        """A wallet's transactions, newest first, ``page_size`` at a time."""
        checks = Checks()
        checks.wallet_id(wallet_id)
        if page_size < 0:
            checks.fail("page_size", "must not be negative")
        if start and end and end <= start:
            checks.fail("end_time", "must be after start_time")
        checks.raise_if_any()
        await self.wallet(wallet_id)  # NOT_FOUND for unknown wallets, not an empty page
        size = min(page_size or 50, 500)
        before = _parse_page_token(page_token) if page_token else None
        kinds = list(_KIND_FILTER[kind]) if kind else None
        rows = await self._pool.fetch(
            "SELECT id, kind, amount, held, description, created_at FROM ledger_transactions "
            "WHERE wallet_id = $1 AND ($2::bigint IS NULL OR id < $2) "
            "AND ($3::text[] IS NULL OR kind = ANY ($3)) "
            "AND ($4::timestamptz IS NULL OR created_at >= $4) "
            "AND ($5::timestamptz IS NULL OR created_at < $5) "
            "ORDER BY id DESC LIMIT $6", wallet_id, before, kinds, start, end, size + 1)
        views = [TransactionView(r["id"], r["kind"],
                                 r["held"] if r["kind"] in _HOLD_KINDS else r["amount"],
                                 r["description"], r["created_at"]) for r in rows[:size]]
        token = _page_token(views[-1].transaction_id) if len(rows) > size else ""
        return Page(views, token)
