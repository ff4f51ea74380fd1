"""Apply Alembic migrations (``llmgw migrate``; also at start-up in the embedded default).

Alembic's command API is synchronous and our env.py drives an asyncio engine, so the
upgrade runs in a worker thread with its own event loop.

Alembic (with Mako and Pygments, which it imports for revision templates) costs ~8 MB
resident for the life of the process, so the server does not import it:
``migrate_to_heads`` first compares the database's ``alembic_version`` rows with the heads
of the revision files (read, not imported) and returns at once when they match, which is
every start-up but the first after a new migration. Anything else (no table yet, a
pending revision, a branch label, a file it cannot read, the database not answering) goes
to Alembic, which behaves (and fails) as before — in a child process
(``python -m server.kernel.db.migrate``, the URL on its stdin) when ``isolated``, so the
long-lived server never holds it.
"""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
VERSIONS = MIGRATIONS / "versions"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["database_url"] = url
    return config


def upgrade(url: str, revision: str = "heads") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


async def upgrade_async(url: str) -> None:
    await asyncio.to_thread(upgrade, url)


def migrate_to_heads(url: str, *, isolated: bool = False) -> bool:
    """Upgrade the database to every head; False when it was there already (Alembic not
    imported), True when Alembic ran (in a child process when ``isolated``)."""
    heads = script_heads()
    if heads is not None and heads == applied_revisions(url):
        return False
    if not isolated:
        upgrade(url)
        return True
    # The child imports this very checkout (whatever put it on our path); its traceback,
    # if any, goes to our stderr.
    root = str(Path(__file__).resolve().parents[3])
    pythonpath = os.pathsep.join(filter(None, (root, os.environ.get("PYTHONPATH"))))
    done = subprocess.run([sys.executable, "-m", "server.kernel.db.migrate"], input=url,
                          text=True, check=False, env={**os.environ, "PYTHONPATH": pythonpath})
    if done.returncode != 0:
        raise SystemExit(f"database migration failed (exit code {done.returncode})")
    return True


def script_heads(versions: Path = VERSIONS) -> frozenset[str] | None:
    """The head revisions of the migration files, from their module-level assignments
    (``revision``, ``down_revision``); None when a file is not of the plain form this reads
    (branch labels, ``depends_on``, non-literal values), so Alembic decides instead."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted(versions.glob("*.py")):
        if path.name.startswith((".#", "__init__")):  # Alembic skips these too
            continue
        try:
            values = _assignments(path)
        except (OSError, SyntaxError, ValueError):
            return None
        revision, down = values.get("revision"), values.get("down_revision")
        if (not isinstance(revision, str) or revision in revisions
                or values.get("branch_labels") is not None
                or values.get("depends_on") is not None):
            return None
        down_revisions = (down,) if isinstance(down, str) else down or ()
        if not isinstance(down_revisions, tuple | list) or not all(
                isinstance(d, str) for d in down_revisions):
            return None
        revisions.add(revision)
        parents.update(down_revisions)
    if not revisions or not parents <= revisions:
        return None
    return frozenset(revisions - parents)


def _assignments(path: Path) -> dict[str, object]:
    names = ("revision", "down_revision", "branch_labels", "depends_on")
    found: dict[str, object] = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        target = value = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        if isinstance(target, ast.Name) and target.id in names:
            found[target.id] = ast.literal_eval(value)
    return found


def applied_revisions(url: str) -> frozenset[str] | None:
    """The rows of ``alembic_version``; None when they cannot be read (no table yet, the
    database not answering: Alembic then creates the table, or reports the error)."""
    try:
        return asyncio.run(_applied_revisions(url))
    except Exception:  # noqa: BLE001 - any failure: let Alembic do (and report) it
        return None


async def _applied_revisions(url: str) -> frozenset[str]:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from server.kernel.db.embedded import async_url

    engine = create_async_engine(async_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT version_num FROM alembic_version"))
            return frozenset(row[0] for row in rows)
    finally:
        await engine.dispose()


if __name__ == "__main__":  # migrate_to_heads(isolated=True): the URL on stdin, not in argv
    upgrade(sys.stdin.readline().strip())
