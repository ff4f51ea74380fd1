"""Idle memory: what `llmgw serve` imports before its first request.

Modules that only some configurations or commands need are imported on first use, so an
idle gateway does not hold them: Alembic (with Mako and Pygments, ~8 MB) only when a
migration is pending, httpx (with rich and click, ~4 MB) only with `auth.jwks_url`, numpy
(~11 MB with its BLAS) only for embedding and retrieval, jsonschema (~3 MB) only for
tool and JSON-schema calls, the openai SDK (~18 MB) only for
the `sdk` transport and embeddings (tests/providers/test_openai_without_sdk.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from server.kernel.db.migrate import migrate_to_heads, script_heads

ROOT = Path(__file__).resolve().parents[2]
DEFERRED = ("alembic", "mako", "pygments", "httpx", "rich", "click", "numpy", "openai",
            "httpx2", "jsonschema")


def test_the_server_modules_import_none_of_the_deferred_modules() -> None:
    probe = ("import sys, server.cli, server.serve, server.app\n"
             f"print(' '.join(m for m in {DEFERRED!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.strip() == ""


def test_the_heads_read_from_the_revision_files_are_alembics() -> None:
    from alembic.script import ScriptDirectory

    from server.kernel.db.migrate import alembic_config

    scripts = ScriptDirectory.from_config(alembic_config("postgresql://unused/db"))
    assert script_heads() == frozenset(scripts.get_heads())


def revision_file(folder: Path, name: str, body: str) -> None:
    (folder / f"{name}.py").write_text(f'"""{name}"""\n{body}\ndef upgrade():\n    pass\n')


def test_heads_of_a_branched_history(tmp_path: Path) -> None:
    revision_file(tmp_path, "a", 'revision = "a"\ndown_revision = None')
    revision_file(tmp_path, "b", 'revision = "b"\ndown_revision = "a"')
    revision_file(tmp_path, "c", 'revision: str = "c"\ndown_revision = "a"')
    revision_file(tmp_path, "d", 'revision = "d"\ndown_revision = ("b", "c")')
    revision_file(tmp_path, "e", 'revision = "e"\ndown_revision = "a"')
    assert script_heads(tmp_path) == {"d", "e"}


@pytest.mark.parametrize("body", [
    'revision = "b"\ndown_revision = "a"\nbranch_labels = ("x",)',
    'revision = "b"\ndown_revision = "a"\ndepends_on = "a"',
    'revision = "b"\ndown_revision = "missing"',
    'revision = "a"\ndown_revision = None',  # the same id twice
    'revision = make_id()\ndown_revision = "a"',
    'down_revision = "a"',
])
def test_unusual_histories_are_left_to_alembic(tmp_path: Path, body: str) -> None:
    revision_file(tmp_path, "a", 'revision = "a"\ndown_revision = None')
    revision_file(tmp_path, "b", body)
    assert script_heads(tmp_path) is None


def test_a_failed_isolated_migration_stops_the_caller() -> None:
    with pytest.raises(SystemExit, match="database migration failed"):
        migrate_to_heads("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2",
                         isolated=True)
