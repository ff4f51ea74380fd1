"""``llmgw``'s shell: every command is wired, ``python -m server.cli`` works, arguments
are checked before any database is touched (tests/unit/test_layering.py keeps the domain
packages free of it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {"serve", "migrate", "token", "ledger", "ingest", "routes", "audit", "check-config"}


def test_every_command_group_is_registered() -> None:
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(commands.choices) == COMMANDS
    ns = build_parser().parse_args(["routes", "set", "alias", "--spec", "{}"])
    assert (ns.routes_command, ns.name, ns.spec) == ("set", "alias", "{}")
    assert build_parser().parse_args(["ledger", "check"]).func is not None


def test_python_dash_m_runs_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "server.cli", "check-config"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("configuration OK:")


@pytest.mark.parametrize(("args", "message"), [
    (["--namespace", "bad namespace!"], "--namespace 'bad namespace!': 1-128 characters"),
    (["--namespace", "ok", "--chunk-size", "10", "--chunk-overlap", "10"],
     "--chunk-overlap must be smaller than --chunk-size"),
])
def test_ingest_rejects_bad_arguments_before_touching_the_database(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str],
        message: str) -> None:
    assert main(["ingest", str(tmp_path), *args]) == 2
    assert message in capsys.readouterr().err
