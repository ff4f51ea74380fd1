"""DESIGN.md §1 as a test: dependencies point one way.

- the domain (generation, billing, rag, fallback, providers) and the shared kernel import
  no grpc, no generated code and nothing of the app shell (handlers, interceptors, app,
  serve, cli) or presentation (argparse, tqdm);
- the kernel imports none of the domain packages (its migrations aside);
- handlers never import each other (what they share about the wire is ``server/wire.py``).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHELL = ("grpc", "llmgateway", "google.rpc", "server.handlers", "server.interceptors",
         "server.serve", "server.app", "server.cli", "server.status", "server.wire",
         "argparse", "tqdm")
DOMAIN = ("generation", "billing", "rag", "fallback", "providers", "prompts", "bots", "audit")


def imports(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.append(node.module or "")
            if node.module == "server":
                names += [f"server.{a.name}" for a in node.names]
    return names


def offenders(packages: tuple[str, ...], banned: tuple[str, ...],
              skip: str = "\0") -> list[str]:
    found = []
    for package in packages:
        for path in sorted((ROOT / "server" / package).rglob("*.py")):
            if skip in path.parts:
                continue
            found += [f"{path.relative_to(ROOT)}: {name}" for name in imports(path)
                      if any(name == b or name.startswith(b + ".") or
                             (b == "llmgateway" and "_pb2" in name) for b in banned)]
    return found


def test_domain_and_kernel_import_no_grpc_generated_code_or_app_shell() -> None:
    assert offenders((*DOMAIN, "kernel"), SHELL) == []


def test_the_kernel_imports_no_domain_package() -> None:
    """Migrations excepted: they are every package's schema history (0002 loads the
    ledger's PL/pgSQL from server/billing/sql)."""
    assert offenders(("kernel",), tuple(f"server.{p}" for p in DOMAIN), skip="migrations") == []


def test_handlers_do_not_import_each_other() -> None:
    handlers = sorted((ROOT / "server" / "handlers").glob("*.py"))
    found = [f"{path.name}: {name}" for path in handlers for name in imports(path)
             if name.startswith("server.handlers")]
    assert found == []


def test_rag_imports_nothing_from_handlers_or_serve() -> None:
    assert offenders(("rag",), ("server.handlers", "server.serve")) == []
