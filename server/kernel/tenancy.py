"""Tenants: whose objects are whose, by name.

A tenant (an organisation) owns wallets, retrieval namespaces, prompt templates, bots and
the budgets, holds and usage records under them. Ownership is carried by the *stored
name*: a tenant's object named ``w1`` is stored as ``acme|w1``, the default tenant's as
plain ``w1`` (so a single-tenant deployment, and everything stored before tenants existed,
is the default tenant's). A lookup always qualifies the caller's name with the caller's
tenant, so another tenant's object is simply not found — the same NOT_FOUND, in the same
time, as an object that does not exist, and nothing in the answer reveals it. No client
name may contain the separator, so no name can be forged into another tenant's.

The tenant comes from a claim of the caller's JWT (``tenancy.claim``); tokens without it
act in the default tenant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from server.kernel.errors import Fault, GatewayError, bad_field

SEPARATOR = "|"
DEFAULT_TENANT = "default"
TENANT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def local_name(stored: str) -> str:
    """A stored name without its tenant (what naming rules apply to)."""
    return stored.rpartition(SEPARATOR)[2]


@dataclass(frozen=True)
class Tenant:
    """The tenant a call acts in, and how its names are stored."""

    name: str = DEFAULT_TENANT

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_TENANT

    def own(self, name: str, field: str) -> str:
        """The stored name of the caller's object ``name`` (INVALID_ARGUMENT naming
        ``field`` when the name holds the separator)."""
        if SEPARATOR in name:
            raise bad_field(field, f"must not contain {SEPARATOR!r}")
        return name if self.is_default or not name else f"{self.name}{SEPARATOR}{name}"

    def shown(self, stored: str) -> str:
        """The caller's name of one of its stored objects."""
        prefix = f"{self.name}{SEPARATOR}"
        return stored[len(prefix):] if not self.is_default and stored.startswith(prefix) \
            else stored

    def owns(self, stored: str) -> bool:
        """Whether a stored name is this tenant's (for listings and objects found by id)."""
        if self.is_default:
            return SEPARATOR not in stored
        return stored.startswith(f"{self.name}{SEPARATOR}")

    def scope(self, subject: str) -> str:
        """The idempotency-key scope of a calling service: its subject within its tenant
        (a default-tenant subject holding the separator is qualified too, so it cannot
        pose as another tenant's service)."""
        if self.is_default and SEPARATOR not in subject:
            return subject
        return f"{self.name}{SEPARATOR}{subject}"


@dataclass(frozen=True)
class TenantClaims:
    """Which JWT claims name the tenant and its tier (``tenancy`` in the configuration).
    The tier picks a set of rate limits: the token's tier claim, else the tenant's
    configured tier, else the default."""

    claim: str = "tenant"
    tier_claim: str = "tier"
    tiers: Mapping[str, str] = field(default_factory=dict)
    default_tier: str = "default"

    @classmethod
    def from_config(cls, config: Any) -> TenantClaims:
        """From ``GatewayConfig.tenancy``."""
        return cls(config.claim, config.tier_claim, dict(config.tiers), config.default_tier)

    def tier_of(self, claims: Mapping[str, Any] | None, tenant: Tenant) -> str:
        value = (claims or {}).get(self.tier_claim)
        if isinstance(value, str) and value:
            return value
        return self.tiers.get(tenant.name, self.default_tier)

    def tenant_of(self, claims: Mapping[str, Any] | None, acting: str | None = None) -> Tenant:
        """The caller's tenant; a malformed claim is refused like a bad token. ``acting``:
        the tenant a platform administrator chose to act in (checked by the auth layer)."""
        if acting is not None:
            if not TENANT_NAME.fullmatch(acting):
                raise bad_field("x-llmgw-tenant", "not a tenant name")
            return Tenant(acting)
        value = (claims or {}).get(self.claim)
        if value is None or value == "":
            return Tenant()
        if not isinstance(value, str) or not TENANT_NAME.fullmatch(value):
            raise GatewayError(Fault.UNAUTHENTICATED, "INVALID_TOKEN",
                               f"the token's {self.claim!r} claim is not a tenant name")
        return Tenant(value)
