"""Which events a listing asks for, checked, and the opaque page token that continues it.

Pages are keyed by event id (newest first), not by offset: an event recorded while a
reader pages through cannot shift or repeat what the next page shows. The token also
carries a fingerprint of the filters it was issued for, so a token replayed with other
filters is refused (INVALID_ARGUMENT ``page_token``) instead of silently paging through
a different listing.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from server.audit.events import KINDS
from server.kernel.errors import FieldViolation, invalid_argument
from server.kernel.tenancy import TENANT_NAME

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500
_TOKEN = re.compile(r"([0-9]{1,19}):([0-9a-f]{12})")
_MAX_ID = 2**63 - 1  # bigserial


@dataclass(frozen=True)
class AuditQuery:
    """A listing: ``tenant`` None means every tenant (the caller may see them all)."""

    tenant: str | None = None
    kind: str = ""
    start: datetime | None = None
    end: datetime | None = None
    page_size: int = 0
    page_token: str = ""

    @property
    def size(self) -> int:
        return min(self.page_size or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)

    def fingerprint(self) -> str:
        filters = "\0".join((self.tenant if self.tenant is not None else "\1", self.kind,
                             self.start.isoformat() if self.start else "",
                             self.end.isoformat() if self.end else ""))
        return hashlib.sha256(filters.encode()).hexdigest()[:12]

    def next_token(self, last_event_id: int) -> str:
        raw = f"{last_event_id}:{self.fingerprint()}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def before_id(self) -> int | None:
        """The id the page starts below (None: the first page). Call ``check`` first."""
        if not self.page_token:
            return None
        match = _parse_token(self.page_token)
        return int(match.group(1)) if match else None

    def check(self) -> None:
        """INVALID_ARGUMENT naming every bad field at once."""
        bad: list[FieldViolation] = []
        if self.tenant is not None and not TENANT_NAME.fullmatch(self.tenant):
            bad.append(FieldViolation("tenant", "not a tenant name"))
        if self.kind and self.kind not in KINDS:
            bad.append(FieldViolation("kind", f"one of {', '.join(KINDS)}"))
        if self.start and self.end and self.end <= self.start:
            bad.append(FieldViolation("end_time", "must be after start_time"))
        if self.page_size < 0:
            bad.append(FieldViolation("page_size", "must not be negative"))
        if self.page_token:
            match = _parse_token(self.page_token)
            if match is None:
                bad.append(FieldViolation("page_token", "not a token from a previous response"))
            elif match.group(2) != self.fingerprint():
                bad.append(FieldViolation(
                    "page_token", "was issued for other filters: repeat them or start over"))
        if bad:
            raise invalid_argument(bad)


def _parse_token(token: str) -> re.Match[str] | None:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        return None
    match = _TOKEN.fullmatch(raw)
    return match if match and int(match.group(1)) <= _MAX_ID else None
