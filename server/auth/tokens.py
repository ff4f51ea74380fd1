"""Service JWTs: parsing the Authorization value, verifying tokens, checking scopes, minting.

Verification sits on every RPC's hot path (PyJWT HS256 is ~60 µs, RS256 more), and
services reuse one token for many calls, so successful verifications are cached by token
string until the token's `exp`. A cached principal is never returned at or after its `exp`;
failures are never cached (a wrong token costs the caller a full verification every time).

Errors are `AuthError`s with a stable UPPER_SNAKE `reason` (for `google.rpc.ErrorInfo`) and
a client-safe `message`: messages are fixed texts and never echo the token, its header
values or any key material. The gRPC interceptor maps `kind` to UNAUTHENTICATED or
PERMISSION_DENIED; this module does not import grpc.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, NamedTuple

import jwt
from jwt import exceptions as jwt_errors

from server.auth.keys import SUPPORTED_ALGORITHMS, KeyLookupError, KeySet

AuthErrorKind = Literal["unauthenticated", "permission_denied"]
AuthReason = Literal[
    "MISSING_CREDENTIALS",
    "MALFORMED_CREDENTIALS",
    "INVALID_TOKEN",
    "TOKEN_EXPIRED",
    "TOKEN_NOT_YET_VALID",
    "UNKNOWN_KEY",
    "INVALID_ISSUER",
    "INVALID_AUDIENCE",
    "MISSING_SUBJECT",
    "MISSING_SCOPE",
]

ADMIN_SCOPE: Final = "admin"
"""A principal holding this scope holds every scope."""

AUTH_SCHEMES: Final = frozenset({"bearer", "jwt"})

MAX_TOKEN_LENGTH: Final = 8192
"""Longer credentials are refused before any parsing (and never fill the cache)."""

_DEFAULT_MESSAGES: Final[Mapping[str, str]] = {
    "MISSING_CREDENTIALS": "missing credentials: send 'authorization: Bearer <jwt>'",
    "MALFORMED_CREDENTIALS": "malformed authorization value: expected 'Bearer <jwt>'",
    "INVALID_TOKEN": "invalid token",
    "TOKEN_EXPIRED": "token has expired",
    "TOKEN_NOT_YET_VALID": "token is not yet valid",
    "UNKNOWN_KEY": "token is signed with an unknown key",
    "INVALID_ISSUER": "token issuer is not trusted",
    "INVALID_AUDIENCE": "token audience does not include this service",
    "MISSING_SUBJECT": "token has no subject ('sub' or 'service' claim)",
    "MISSING_SCOPE": "token lacks a required scope",
}


class AuthError(Exception):
    """Authentication or authorization failure, safe to show to the caller.

    `kind` selects the gRPC code (UNAUTHENTICATED / PERMISSION_DENIED), `reason` is a stable
    machine-readable code, `message` a human text without secrets or token content.
    """

    def __init__(self, kind: AuthErrorKind, reason: AuthReason, message: str | None = None,
                 *, missing_scope: str | None = None):
        self.kind: AuthErrorKind = kind
        self.reason: AuthReason = reason
        self.missing_scope = missing_scope  # set by require_scope: the scope to ask for
        self.message: str = message if message is not None else _DEFAULT_MESSAGES[reason]
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"AuthError({self.kind!r}, {self.reason!r}, {self.message!r})"


def _unauthenticated(reason: AuthReason, message: str | None = None) -> AuthError:
    return AuthError("unauthenticated", reason, message)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: who (`subject`), what it may do (`scopes`), all claims."""

    subject: str
    scopes: frozenset[str]
    claims: Mapping[str, Any] = field(hash=False)  # read-only view; hash by who + what

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN_SCOPE in self.scopes


def require_scope(principal: Principal, scope: str) -> None:
    """Raise permission_denied MISSING_SCOPE unless the principal holds `scope` (or admin)."""
    if not principal.has_scope(scope):
        raise AuthError("permission_denied", "MISSING_SCOPE", f"token lacks scope '{scope}'",
                        missing_scope=scope)


def parse_authorization(value: str | None) -> str:
    """The token from an `authorization` metadata value: `Bearer <t>` or `jwt <t>`.

    The scheme is case-insensitive. Nothing of the value is echoed in errors.
    """
    if value is None or not value.strip():
        raise _unauthenticated("MISSING_CREDENTIALS")
    if len(value) > MAX_TOKEN_LENGTH + 16:
        raise _unauthenticated("MALFORMED_CREDENTIALS", "authorization value is too long")
    parts = value.split()
    if len(parts) != 2 or parts[0].lower() not in AUTH_SCHEMES:
        raise _unauthenticated("MALFORMED_CREDENTIALS")
    return parts[1]


class _CacheEntry(NamedTuple):
    principal: Principal
    expires_at: float


class TokenVerifier:
    """Verifies service JWTs against a `KeySet`, for one issuer and one audience.

    Checks the signature (algorithm pinned by the key), `exp` (required), `nbf` and `iat`
    with `leeway_s`, `iss`, `aud`, and requires a subject. Verified tokens are cached
    (LRU, at most `cache_size`, 0 disables) until their `exp` by the `clock`
    (wall-clock seconds; injectable for tests). Thread-safe, no I/O: call it inline.
    """

    def __init__(
        self,
        keys: KeySet,
        issuer: str,
        audience: str,
        leeway_s: float = 30.0,
        cache_size: int = 4096,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if cache_size < 0:
            raise ValueError("cache_size must be >= 0")
        if leeway_s < 0:
            raise ValueError("leeway_s must be >= 0")
        self._keys = keys
        self._issuer = issuer
        self._audience = audience
        self._leeway_s = leeway_s
        self._cache_size = cache_size
        self._clock = clock
        self._cache: OrderedDict[str, _CacheEntry] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, token: str) -> Principal:
        """The principal a token proves, or AuthError (kind "unauthenticated")."""
        now = self._clock()
        cached = self._cached(token, now)
        if cached is not None:
            return cached
        principal, expires_at = self._verify_uncached(token)
        if expires_at > now:
            self._remember(token, _CacheEntry(principal, expires_at))
        return principal

    def require_scope(self, principal: Principal, scope: str) -> None:
        """Raise permission_denied MISSING_SCOPE unless `principal` holds `scope` or admin."""
        require_scope(principal, scope)

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    @property
    def cache_len(self) -> int:
        return len(self._cache)

    def _cached(self, token: str, now: float) -> Principal | None:
        if not self._cache_size:
            return None
        with self._lock:
            entry = self._cache.get(token)
            if entry is None:
                return None
            if now >= entry.expires_at:
                del self._cache[token]
                return None
            self._cache.move_to_end(token)
            return entry.principal

    def _remember(self, token: str, entry: _CacheEntry) -> None:
        if not self._cache_size:
            return
        with self._lock:
            self._cache[token] = entry
            self._cache.move_to_end(token)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _verify_uncached(self, token: str) -> tuple[Principal, float]:
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise _unauthenticated("INVALID_TOKEN", "token is malformed")
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.PyJWTError:
            raise _unauthenticated("INVALID_TOKEN", "token is malformed") from None
        try:
            key = self._keys.select(header.get("alg"), header.get("kid"))
        except KeyLookupError as exc:
            raise _unauthenticated(exc.reason, exc.message) from None
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["exp"]},
            )
        except jwt_errors.PyJWTError as exc:
            raise _error_for(exc) from None
        principal = Principal(
            subject=_subject(claims),
            scopes=_scopes(claims),
            claims=MappingProxyType(dict(claims)),
        )
        return principal, float(claims["exp"])


def _error_for(exc: jwt_errors.PyJWTError) -> AuthError:
    """Map a PyJWT failure to our reason codes. PyJWT checks the signature before claims,
    so a claim-specific reason is only ever given for a genuinely signed token."""
    match exc:
        case jwt_errors.ExpiredSignatureError():
            return _unauthenticated("TOKEN_EXPIRED")
        case jwt_errors.ImmatureSignatureError():
            return _unauthenticated("TOKEN_NOT_YET_VALID")
        case jwt_errors.InvalidAudienceError():
            return _unauthenticated("INVALID_AUDIENCE")
        case jwt_errors.InvalidIssuerError():
            return _unauthenticated("INVALID_ISSUER")
        case jwt_errors.MissingRequiredClaimError(claim="iss"):
            return _unauthenticated("INVALID_ISSUER", "token has no issuer ('iss' claim)")
        case jwt_errors.MissingRequiredClaimError(claim="aud"):
            return _unauthenticated("INVALID_AUDIENCE", "token has no audience ('aud' claim)")
        case jwt_errors.MissingRequiredClaimError(claim="exp"):
            return _unauthenticated("INVALID_TOKEN", "token has no expiry ('exp' claim)")
        case jwt_errors.InvalidSignatureError():
            return _unauthenticated("INVALID_TOKEN", "token signature is invalid")
        case _:
            return _unauthenticated("INVALID_TOKEN")


def _subject(claims: Mapping[str, Any]) -> str:
    for name in ("sub", "service"):
        value = claims.get(name)
        if isinstance(value, str) and value.strip():
            return value
    raise _unauthenticated("MISSING_SUBJECT")


def _scopes(claims: Mapping[str, Any]) -> frozenset[str]:
    scopes: set[str] = set()
    scope = claims.get("scope")
    if scope is not None:
        if not isinstance(scope, str):
            raise _unauthenticated(
                "INVALID_TOKEN", "'scope' claim must be a space-separated string"
            )
        scopes.update(scope.split())
    listed = claims.get("scopes")
    if listed is not None:
        if not isinstance(listed, list) or not all(isinstance(s, str) for s in listed):
            raise _unauthenticated("INVALID_TOKEN", "'scopes' claim must be a list of strings")
        scopes.update(s for s in listed if s)
    return frozenset(scopes)


def mint_token(
    *,
    key: str | bytes,
    algorithm: str = "HS256",
    subject: str,
    scopes: Sequence[str],
    issuer: str,
    audience: str,
    ttl_s: int = 3600,
    kid: str | None = None,
    extra_claims: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """Sign a service token (the `llmgw token` CLI and tests use this).

    `key` is the HS256 secret, or a PEM private key for RS256/ES256. Claims: iss, sub, aud,
    iat = nbf = `now` (default: the current time), exp = iat + ttl_s, a random jti, and
    `scope` as a space-separated string. `extra_claims` are applied last and may override
    any of these (tests use that to craft expired or not-yet-valid tokens).
    """
    if algorithm not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"algorithm must be one of {sorted(SUPPORTED_ALGORITHMS)}")
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    if not subject:
        raise ValueError("subject must not be empty")
    if isinstance(scopes, str):
        raise TypeError("scopes must be a sequence of scope names, not a string")
    for scope in scopes:
        if not scope or any(ch.isspace() for ch in scope):
            raise ValueError(f"invalid scope name {scope!r}")
    issued_at = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": audience,
        "iat": issued_at,
        "nbf": issued_at,
        "exp": issued_at + int(ttl_s),
        "jti": secrets.token_urlsafe(16),
    }
    if scopes:
        claims["scope"] = " ".join(dict.fromkeys(scopes))
    claims.update(extra_claims or {})
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)
