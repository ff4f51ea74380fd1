"""gRPC metadata in and out: what the client sends with a call and reads from its trailers.

Sync calls return trailers as a tuple of pairs and `grpc.aio` returns a `Metadata`
object; both iterate as `(key, value)` pairs, which is all this module relies on.
"""

from __future__ import annotations

from collections.abc import Iterable

from .auth import TokenSource

__all__ = [
    "AUTHORIZATION_KEY",
    "RETRY_AFTER_KEY",
    "STATUS_DETAILS_KEY",
    "TRACEPARENT_KEY",
    "TRACE_ID_KEY",
    "MetadataPairs",
    "call_metadata",
    "first_text",
    "first_value",
]

AUTHORIZATION_KEY = "authorization"
TRACEPARENT_KEY = "traceparent"
TRACE_ID_KEY = "x-trace-id"
RETRY_AFTER_KEY = "retry-after"
STATUS_DETAILS_KEY = "grpc-status-details-bin"

MetadataPairs = Iterable[tuple[str, str | bytes]]


def call_metadata(
    token_source: TokenSource | None, traceparent: str | None
) -> tuple[tuple[str, str], ...]:
    """Metadata for one attempt: a fresh bearer token and, if given, the W3C traceparent."""
    pairs: list[tuple[str, str]] = []
    if token_source is not None:
        pairs.append((AUTHORIZATION_KEY, f"Bearer {token_source.token()}"))
    if traceparent:
        pairs.append((TRACEPARENT_KEY, traceparent))
    return tuple(pairs)


def first_value(metadata: MetadataPairs | None, key: str) -> str | bytes | None:
    """The first value under `key` (keys are lower case on the wire), or None."""
    if metadata is None:
        return None
    for name, value in metadata:
        if name.lower() == key:
            return value
    return None


def first_text(metadata: MetadataPairs | None, key: str) -> str:
    """Like `first_value` for a text header; empty when absent."""
    value = first_value(metadata, key)
    if value is None:
        return ""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
