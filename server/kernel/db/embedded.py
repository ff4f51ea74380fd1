"""The embedded PostgreSQL + pgvector used when no DATABASE_URL is given (``pgserver``).

pgserver bundles Postgres 16 and pgvector in a wheel, so ``make run`` needs no database
set-up. The data directory is kept across restarts. pgserver reference-counts the
processes using a data dir and, with ``cleanup="stop"``, stops Postgres when the last one
exits, so nothing is left running after ``make run`` ends.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


def start_embedded(data_dir: Path, *, cleanup: str | None = "stop") -> str:
    """Start (or join) the embedded server and return a ``postgresql://`` URI.

    ``cleanup``: "stop" (default) stops Postgres when the last user exits, "delete" also
    removes the data (tests), None leaves it running.
    """
    import pgserver  # imported lazily: only the embedded mode needs it

    pg_dir = (data_dir / "pg").resolve()
    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pg_dir, cleanup_mode=cleanup)
    uri = server.get_uri()
    log.info("embedded postgres ready", extra={"data_dir": str(pg_dir)})
    return uri


def async_url(url: str) -> str:
    """The SQLAlchemy asyncpg form of a ``postgresql://`` URL."""
    scheme = urlsplit(url).scheme
    if scheme in ("postgresql", "postgres"):
        return "postgresql+asyncpg" + url[len(scheme):]
    if scheme == "postgresql+asyncpg":
        return url
    raise ValueError(f"database.url: expected a postgresql:// URL, got scheme {scheme!r}")
