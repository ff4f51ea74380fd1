"""Where the bearer token comes from.

The client asks its token source for a token before every attempt of every call, so a
source only has to be cheap when the token is still fresh. `TokenMinter` signs its own
JWTs (services that hold a signing key); `StaticToken` passes through a token obtained
elsewhere (an identity provider, `LLMGW_TOKEN`, a test).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import jwt

__all__ = ["StaticToken", "TokenMinter", "TokenSource"]


@runtime_checkable
class TokenSource(Protocol):
    """Anything that can hand out a currently valid bearer token."""

    def token(self) -> str:
        """Return a token that is valid now (without the `Bearer ` prefix)."""
        ...


@dataclass(frozen=True)
class StaticToken:
    """A fixed token; expiry is the caller's business."""

    value: str

    def __post_init__(self) -> None:
        if not self.value:
            raise ValueError("StaticToken needs a non-empty token")

    def token(self) -> str:
        return self.value

    def __repr__(self) -> str:  # never print the credential itself
        return "StaticToken(<redacted>)"


@dataclass(frozen=True)
class _Minted:
    token: str
    expires_at: float
    refresh_at: float


class TokenMinter:
    """Mints JWTs the gateway accepts and caches each one until shortly before it expires.

    Claims: `iss`, `aud`, `sub`, `scope` (space separated, OAuth style), `iat`, `nbf`,
    `exp` and a unique `jti`. A token is reused until `refresh_margin_s` before its `exp`
    so that a token sent at the end of its life cannot expire in flight (clock skew,
    retries); after that point the next `token()` mints a new one. The injected `clock`
    (seconds since the epoch) makes the expiry logic testable without sleeping.
    """

    def __init__(
        self,
        key: str | bytes | Any,
        *,
        subject: str,
        scopes: Sequence[str] | str,
        issuer: str = "llm-gateway-dev",
        audience: str = "llm-gateway",
        algorithm: str = "HS256",
        ttl_s: float = 3600,
        kid: str | None = None,
        refresh_margin_s: float = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not subject:
            raise ValueError("subject must not be empty: the gateway rejects tokens without `sub`")
        if ttl_s < 1:
            raise ValueError("ttl_s must be at least one second")
        if not 0 <= refresh_margin_s < ttl_s:
            raise ValueError("refresh_margin_s must be in [0, ttl_s)")
        self._key = key
        self._subject = subject
        self._scope = scopes if isinstance(scopes, str) else " ".join(scopes)
        self._issuer = issuer
        self._audience = audience
        self._algorithm = algorithm
        self._ttl_s = ttl_s
        self._kid = kid
        self._refresh_margin_s = refresh_margin_s
        self._clock = clock
        self._lock = threading.Lock()  # the sync client may share one minter across threads
        self._cached: _Minted | None = None

    def token(self) -> str:
        """Return the cached token, or mint a new one once it is within the refresh margin."""
        with self._lock:
            now = self._clock()
            cached = self._cached
            if cached is None or now >= cached.refresh_at or now >= cached.expires_at:
                cached = self._mint(now)
                self._cached = cached
            return cached.token

    def _mint(self, now: float) -> _Minted:
        issued_at = int(now)  # JWT NumericDate; truncation keeps iat/nbf <= now
        expires_at = issued_at + int(self._ttl_s)
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": self._subject,
            "scope": self._scope,
            "iat": issued_at,
            "nbf": issued_at,
            "exp": expires_at,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self._kid} if self._kid else None
        token = jwt.encode(claims, self._key, algorithm=self._algorithm, headers=headers)
        return _Minted(
            token=token, expires_at=expires_at, refresh_at=expires_at - self._refresh_margin_s
        )

    def __repr__(self) -> str:
        return (
            f"TokenMinter(subject={self._subject!r}, scopes={self._scope!r}, "
            f"issuer={self._issuer!r}, audience={self._audience!r}, algorithm={self._algorithm!r})"
        )
