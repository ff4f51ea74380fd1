"""JWT service authentication: which keys we trust (`keys`) and what a token proves (`tokens`).

Keys that rotate: `rotating` swaps in a new verifier when the keys change, `jwks_refresh`
decides when to fetch a JWKS URL (start, interval, unknown kid) and `jwks_http` fetches it.

Domain code only: the gRPC interceptor reads the `authorization` metadata, calls
`parse_authorization` + `verify`, awaits `JwksRefresher.refresh_for_unknown_key` (when a
JWKS URL is configured) on UNKNOWN_KEY, and maps `AuthError.kind` to a status code.
"""

from server.auth.keys import (
    DEFAULT_HS256_KID,
    SUPPORTED_ALGORITHMS,
    KeyLookupError,
    KeySet,
    VerificationKey,
    load_or_create_dev_secret,
)
from server.auth.tokens import (
    ADMIN_SCOPE,
    AuthError,
    AuthErrorKind,
    AuthReason,
    Principal,
    TokenVerifier,
    mint_token,
    parse_authorization,
    require_scope,
)

__all__ = [
    "ADMIN_SCOPE",
    "DEFAULT_HS256_KID",
    "SUPPORTED_ALGORITHMS",
    "AuthError",
    "AuthErrorKind",
    "AuthReason",
    "KeyLookupError",
    "KeySet",
    "Principal",
    "TokenVerifier",
    "VerificationKey",
    "load_or_create_dev_secret",
    "mint_token",
    "parse_authorization",
    "require_scope",
]
