"""Input checks for ledger calls: every bad value names its field (INVALID_ARGUMENT)."""

from __future__ import annotations

import re

from server.kernel.tenancy import local_name
from server.kernel.errors import FieldViolation, invalid_argument

WALLET_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_KEY = 128
MAX_DESCRIPTION = 1000
MAX_AMOUNT = 10**15  # a billion units of currency: keeps every sum far from int64 overflow
# The gateway's own ledger keys (a generation's charge ``gen:<key>``, its hold
# ``gen-hold:<id>``) live in the calling service's key space; clients may not use these
# prefixes, so a client Charge can never collide with a later billed Generate.
RESERVED_KEY_PREFIXES = ("gen:", "gen-hold:")


class Checks:
    """Collects violations so one error can name every bad field at once."""

    def __init__(self) -> None:
        self.violations: list[FieldViolation] = []

    def fail(self, field: str, description: str) -> None:
        self.violations.append(FieldViolation(field, description))

    def wallet_id(self, value: str, field: str = "wallet_id") -> None:
        local = local_name(value)  # the rule is on the tenant's own name
        if not value:
            self.fail(field, "required")
        elif not WALLET_ID.fullmatch(local):
            self.fail(field, "must be 1..128 characters of [A-Za-z0-9._:-]")
        elif local.startswith("system:"):
            self.fail(field, "the 'system:' prefix is reserved for ledger accounts")

    def idempotency_key(self, value: str, field: str = "idempotency_key") -> None:
        if not value:
            self.fail(field, "required: every call that moves money takes an idempotency key")
        elif len(value) > MAX_KEY:
            self.fail(field, f"at most {MAX_KEY} characters")

    def client_idempotency_key(self, value: str, field: str = "idempotency_key") -> None:
        """A key sent by a client: as ``idempotency_key``, and not in the reserved space."""
        self.idempotency_key(value, field)
        if value.startswith(RESERVED_KEY_PREFIXES):
            self.fail(field, "keys starting with " + " or ".join(
                repr(p) for p in RESERVED_KEY_PREFIXES) + " are reserved for the gateway")

    def amount(self, value: int, field: str = "amount_micros") -> None:
        if value <= 0:
            self.fail(field, "must be a positive number of micro-units")
        elif value > MAX_AMOUNT:
            self.fail(field, f"at most {MAX_AMOUNT}")

    def currency(self, value: str, field: str = "currency_code", required: bool = False) -> None:
        if not value:
            if required:
                self.fail(field, "required (ISO 4217, e.g. USD)")
        elif not CURRENCY.fullmatch(value):
            self.fail(field, "must be an ISO 4217 code of three capital letters, e.g. USD")

    def description(self, value: str, field: str = "description") -> None:
        if len(value) > MAX_DESCRIPTION:
            self.fail(field, f"at most {MAX_DESCRIPTION} characters")

    def raise_if_any(self) -> None:
        if self.violations:
            raise invalid_argument(self.violations)
