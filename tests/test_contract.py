"""The contract's own checks: generated/ matches proto/, and buf lint passes."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.gateway import ROOT

BUF = ROOT / "tests" / "node" / "node_modules" / ".bin" / "buf"


def test_generated_code_is_fresh():
    result = subprocess.run([sys.executable, "scripts/protogen.py", "--check", "generated"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr


def test_buf_lint_passes():
    assert BUF.exists(), "run `make node-deps` (make test does) to install buf"
    result = subprocess.run([str(BUF), "lint"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_buf_breaking_against_main_when_available():
    """`buf breaking` against the main branch; skipped where git has no main to compare."""
    has_main = subprocess.run(["git", "rev-parse", "--verify", "-q", "main"], cwd=ROOT,
                              capture_output=True, check=False).returncode == 0
    if not has_main:
        import pytest

        pytest.skip("no main branch in this checkout")
    result = subprocess.run([str(BUF), "breaking", "--against", ".git#branch=main"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_reason_the_server_raises_is_in_the_contract():
    """A reason string in ErrorInfo that ``errors.proto`` does not list is a reason other
    languages cannot switch on: every ``GatewayError(Fault.X, "REASON", …)`` must be there."""
    from llmgateway.v1 import errors_pb2

    listed = {name.removeprefix("ERROR_REASON_") for name in errors_pb2.ErrorReason.keys()}
    raised = {match.group(1): str(path)
              for path in (ROOT / "server").rglob("*.py")
              for match in re.finditer(r'\(\s*Fault\.\w+,\s*"([A-Z_]+)"', path.read_text())}
    assert len(raised) > 20  # the pattern still finds the server's errors
    assert {r: p for r, p in raised.items() if r not in listed} == {}
