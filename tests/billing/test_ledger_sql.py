"""The ledger's stored functions in the database are exactly their newest versioned files
in ``server/billing/sql/``: the file is the place to read the live money logic, so a
migration that redefines a function inline (or edits an old version) fails here."""

from __future__ import annotations

import re
from importlib.resources import files

import asyncpg

from server.billing import sql
from server.billing.runtime import asyncpg_url


def newest_versions() -> dict[str, str]:
    """function name -> file name of its highest version."""
    newest: dict[str, tuple[int, str]] = {}
    for entry in files(sql).iterdir():
        match = re.fullmatch(r"(\w+)_v(\d+)\.sql", entry.name)
        if match:
            name, version = match[1], int(match[2])
            if version > newest.get(name, (0, ""))[0]:
                newest[name] = (version, entry.name)
    return {name: file for name, (_, file) in newest.items()}


def body(definition: str) -> str:
    """The function body: what Postgres stores as ``prosrc`` (between the ``$$``)."""
    return definition.split("$$")[1]


async def test_the_live_functions_are_the_newest_sql_files(pg_url: str) -> None:
    newest = newest_versions()
    assert {"ledger_apply", "ledger_append_only"} <= set(newest)
    conn = await asyncpg.connect(asyncpg_url(pg_url))
    try:
        rows = await conn.fetch("SELECT proname, prosrc FROM pg_proc "
                                "WHERE proname = ANY($1::text[]) AND prokind = 'f'",
                                list(newest))
    finally:
        await conn.close()
    live = {r["proname"]: r["prosrc"] for r in rows}
    for name, file in newest.items():
        assert live.get(name) == body(sql.load(file)), f"{name} differs from {file}"
