"""An audit event, and the two rules its JSON obeys: bounded size, no secrets.

Why bounded: a prompt template or bot metadata may be large, and the audit trail must
not become the place where one huge request costs a page of history its readability
(or the table its size). A value over ``MAX_JSON_BYTES`` is kept as a marker saying how
big it was; the object id, kind and who are always kept.

Why redacted by key name: the audited requests carry no credentials (the authorization
header is metadata and never reaches an event), but free-form fields (bot metadata,
structured prompts) can hold anything a team types into them. Keys that name a secret
(``api_key``, ``password``, ``client_secret``, ``authorization`` ...) keep their key and
lose their value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

KINDS: Final = ("prompt", "bot", "bot_config", "route", "wallet", "budget")
"""What an event may be about; ``ListAuditEvents.kind`` filters by these."""

MAX_JSON_BYTES: Final = 16 * 1024
REDACTED: Final = "[redacted]"

# Compared with a key lowercased and stripped of everything but letters and digits, so
# apiKey, api-key and API_KEY are the same key.
_SECRET_PARTS: Final = ("secret", "password", "passwd", "apikey", "authorization", "credential",
                        "privatekey", "accesstoken", "refreshtoken", "bearer", "sessiontoken")
_NOT_ALNUM = re.compile(r"[^a-z0-9]")


@dataclass(frozen=True)
class AuditEvent:
    """One recorded change. ``before``/``after``/``request`` are JSON objects (or None)."""

    tenant: str
    service: str
    kind: str
    method: str
    object_id: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    request: dict[str, Any] | None = None
    trace_id: str = ""
    event_id: int = 0                 # assigned by the store
    at: datetime | None = None        # assigned by the store


def is_secret_key(key: str) -> bool:
    normal = _NOT_ALNUM.sub("", key.lower())
    return any(part in normal for part in _SECRET_PARTS)


def redacted(value: Any) -> Any:
    """``value`` with the values of secret-looking keys replaced, at any depth."""
    if isinstance(value, dict):
        return {k: REDACTED if is_secret_key(str(k)) else redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def bounded(value: dict[str, Any] | None,
            limit: int = MAX_JSON_BYTES) -> dict[str, Any] | None:
    """``value`` redacted, or a ``{"truncated": true, "bytes": N}`` marker when its JSON
    is over ``limit`` bytes."""
    if value is None:
        return None
    clean = redacted(value)
    size = len(json.dumps(clean, default=str, separators=(",", ":")).encode())
    return clean if size <= limit else {"truncated": True, "bytes": size}


def shown_names(value: dict[str, Any] | None,
                shown: Callable[[str], str]) -> dict[str, Any] | None:
    """A stored row's top-level string values as the caller names them (``shown`` is a
    ``Tenant.shown``): the audit trail speaks the tenant's names, not the storage's."""
    if value is None:
        return None
    return {k: shown(v) if isinstance(v, str) else v for k, v in value.items()}
