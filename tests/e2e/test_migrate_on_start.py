"""`database.migrate_on_start`: the server applies pending migrations in a child process
(Alembic never enters the long-lived server) and skips Alembic when nothing is pending."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from server.kernel.db.embedded import async_url
from server.kernel.db.migrate import applied_revisions, script_heads

ROOT = Path(__file__).resolve().parents[2]


def migrate_in_probe(url: str) -> str:
    """`migrate_to_heads(url, isolated=True)` in a fresh interpreter: its result, and
    whether Alembic was imported there."""
    probe = ("import sys\nfrom server.kernel.db.migrate import migrate_to_heads\n"
             "ran = migrate_to_heads(sys.stdin.read(), isolated=True)\n"
             "print(ran, 'alembic' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], input=url, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def execute_autocommit(url: str, statement: str) -> None:
    engine = create_async_engine(async_url(url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@pytest.fixture
def empty_database(pg_url: str) -> Iterator[str]:
    name = f"llmgw_migrate_{uuid.uuid4().hex[:12]}"
    asyncio.run(execute_autocommit(pg_url, f"CREATE DATABASE {name}"))
    yield urlunsplit(urlsplit(pg_url)._replace(path=f"/{name}"))
    asyncio.run(execute_autocommit(pg_url, f"DROP DATABASE {name} WITH (FORCE)"))


def test_a_database_at_heads_is_not_migrated_and_alembic_not_imported(pg_url: str) -> None:
    assert migrate_in_probe(pg_url) == "False False"


def test_a_new_database_is_migrated_to_heads_by_a_child_process(empty_database: str) -> None:
    assert applied_revisions(empty_database) is None  # no alembic_version table yet
    assert migrate_in_probe(empty_database) == "True False"
    assert applied_revisions(empty_database) == script_heads()
    assert migrate_in_probe(empty_database) == "False False"
