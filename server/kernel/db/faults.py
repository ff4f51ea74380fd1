"""Which database failures are the database's absence, not our bug: one classifier.

Why: while Postgres shuts down, restarts or fails over, every query fails — with asyncpg's
own exceptions, SQLAlchemy's wrappers of them, or bare OS errors from the socket (a
stopped server on a Unix socket is a ``FileNotFoundError``). Reported as INTERNAL, a caller
believes the request failed for good and, for a committed charge, that it was not made;
the right answer is UNAVAILABLE, which clients retry — safe because every money movement
carries an idempotency key and the ledger replays it. Statement errors (a bad query, a
constraint) are bugs and stay out: retrying them cannot help.

Used at the boundaries that turn failures into answers: the ledger writer (per batch) and
the gRPC error mapping (every RPC). Domain code: no grpc here.
"""

from __future__ import annotations

import errno
import traceback
from collections.abc import Iterator

import asyncpg
import sqlalchemy.exc

from server.kernel.errors import Fault, GatewayError

RETRY_AFTER_S = 1.0

# SQLSTATEs meaning "the server or the connection is not there (now)", not "your statement
# is wrong". Class 08 (connection exception) is matched by prefix.
_UNAVAILABLE_STATES = {
    "57P01",  # admin_shutdown: terminated by a (fast) shutdown or pg_terminate_backend
    "57P02",  # crash_shutdown: another backend crashed, the server is resetting
    "57P03",  # cannot_connect_now: the server is starting up or shutting down
    "57P05",  # idle_session_timeout: the server dropped an idle pooled connection
    "53300",  # too_many_connections
    "40001",  # serialization_failure: rolled back whole, nothing happened; run it again
    "40P01",  # deadlock_detected: likewise
}
_UNAVAILABLE_TEXT = ("the database system is shutting down",
                     "the database system is starting up",
                     "the database system is in recovery mode")
# asyncpg's InterfaceError covers misuse too (wrong argument count); only these mean the
# connection is gone. A pool connection the server dropped is detached from its holder,
# whose next call then reads "released back to the pool".
_CLOSED_TEXT = ("connection is closed", "connection was closed", "pool is closing",
                "released back to the pool")
# asyncpg's protocol enters its "error consume" state (2) when a message arrives that no
# operation expects — on an idle pooled connection, the server's FATAL as it terminates it —
# and stays there until the socket closes; an operation started in between (nothing sent
# yet) fails with this InternalClientError.
_DROPPED_IDLE_TEXT = "another operation (2) is in progress"
_SOCKET_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.EPIPE,
                  errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENOTCONN,
                  errno.ESHUTDOWN, errno.EHOSTDOWN, errno.ENETDOWN}
_DRIVERS = ("asyncpg", "sqlalchemy")


def dependency_unavailable(what: str, detail: str = "") -> GatewayError:
    """UNAVAILABLE / DEPENDENCY_UNAVAILABLE: retrying (with the same idempotency key) is
    safe and may succeed."""
    because = f" ({detail})" if detail else ""
    return GatewayError(Fault.UNAVAILABLE, "DEPENDENCY_UNAVAILABLE",
                        f"{what} is unavailable{because}; retry (with the same idempotency "
                        "key)", retry_after_s=RETRY_AFTER_S)


def dependency_fault(exc: BaseException) -> GatewayError | None:
    """The UNAVAILABLE error for ``exc`` when it (or what it wraps) is a connection-level
    database failure; None for anything else, including a ``GatewayError`` (already an
    answer) and statement errors (bugs)."""
    if isinstance(exc, GatewayError):
        return None
    for link in _chain(exc):
        if _connection_level(link):
            return dependency_unavailable("the database", type(link).__name__)
    return None


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it explicitly wraps: ``raise … from`` causes and SQLAlchemy's
    ``orig``. Not ``__context__``: a bug raised while handling an outage stays a bug."""
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen and len(seen) < 8:
        seen.add(id(link))
        yield link
        orig = getattr(link, "orig", None)
        if isinstance(orig, BaseException) and id(orig) not in seen:
            yield from _chain(orig)
        link = link.__cause__


def _connection_level(link: BaseException) -> bool:
    if isinstance(link, asyncpg.exceptions.DataError):
        return False  # an argument asyncpg cannot encode: a bug (it is an InterfaceError)
    if isinstance(link, asyncpg.exceptions.InterfaceError):
        return any(text in str(link) for text in _CLOSED_TEXT)
    if isinstance(link, asyncpg.exceptions.InternalClientError):
        return _DROPPED_IDLE_TEXT in str(link)
    if isinstance(link, sqlalchemy.exc.DBAPIError) and link.connection_invalidated:
        return True
    if isinstance(link, sqlalchemy.exc.TimeoutError):
        return True  # SQLAlchemy's pool: no connection came free in time
    if isinstance(link, OSError):
        # Refused, reset, timed out: a socket's failure. Any other OS error (a missing
        # Unix socket is ENOENT) only when the database driver raised it.
        return (isinstance(link, ConnectionError) or link.errno in _SOCKET_ERRNOS
                or _raised_in_driver(link))
    state = getattr(link, "sqlstate", None) or getattr(link, "pgcode", None)
    if isinstance(state, str) and (state.startswith("08") or state in _UNAVAILABLE_STATES):
        return True
    if isinstance(link, (asyncpg.PostgresError, sqlalchemy.exc.DBAPIError)):
        return any(text in str(link) for text in _UNAVAILABLE_TEXT)
    return False


def _raised_in_driver(exc: BaseException) -> bool:
    """True when a frame of asyncpg or SQLAlchemy is on ``exc``'s traceback."""
    for frame, _ in traceback.walk_tb(exc.__traceback__):
        module = frame.f_globals.get("__name__", "")
        if module.split(".", 1)[0] in _DRIVERS:
            return True
    return False
