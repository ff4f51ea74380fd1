"""The ledger's stored functions (PL/pgSQL) as versioned ``.sql`` files.

Why files and not strings inside migrations: the money logic that runs in the database
should be readable (and diffable) in one place, next to the Python that calls it. The live
definition of a function is its highest-numbered file, ``<function>_v<N>.sql``.

Why versions: Alembic migrations load these files by name, and replaying the migration
history must build the same database every time. So a file is never edited once a
migration loads it; a change is a new file (``ledger_apply_v2.sql``, written as
``CREATE OR REPLACE FUNCTION``) plus a new migration that loads it (and whose downgrade
loads the previous version).
"""

from __future__ import annotations

from importlib.resources import files


def load(name: str) -> str:
    """The text of one versioned SQL file, e.g. ``load("ledger_apply_v1.sql")``."""
    return (files(__package__) / name).read_text(encoding="utf-8")
