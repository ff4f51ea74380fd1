"""Generate Python code for proto/ into generated/ (``make proto``), or check it is fresh.

One script for both so that the freshness check runs exactly the generation command:
``--check`` generates into a temporary folder and compares it with the committed files.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
PACKAGE = Path("llmgateway")
# Files in generated/llmgateway that are written by hand, not by protoc.
HAND_WRITTEN = {"__init__.py", "py.typed"}


def proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE).rglob("*.proto"))


def generate(out_dir: Path) -> None:
    """Run protoc with the Python, gRPC and mypy (.pyi) plugins."""
    out_dir.mkdir(parents=True, exist_ok=True)
    # protoc-gen-mypy / protoc-gen-mypy_grpc live beside this interpreter.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out={out_dir}",
        f"--mypy_grpc_out={out_dir}",
        *proto_files(),
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def generated_files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for p in (root / PACKAGE).rglob("*")
        if p.is_file() and p.name not in HAND_WRITTEN and "__pycache__" not in p.parts
    }


def check(target: Path) -> list[str]:
    """Return the problems that make ``target`` differ from a fresh generation."""
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want, have = generated_files(fresh), generated_files(target)
        problems = [f"missing: {f}" for f in sorted(want - have)]
        problems += [f"not generated from proto/: {f}" for f in sorted(have - want)]
        problems += [
            f"stale: {f}"
            for f in sorted(want & have)
            if not filecmp.cmp(fresh / f, target / f, shallow=False)
        ]
        return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path, help="the generated/ folder")
    parser.add_argument("--check", action="store_true", help="only check freshness")
    ns = parser.parse_args()
    if ns.check:
        problems = check(ns.out)
        if problems:
            print("generated/ is stale; run `make proto`:", *problems, sep="\n  ", file=sys.stderr)
            raise SystemExit(1)
        print("generated/ is up to date")
        return
    for stale in generated_files(ns.out):
        (ns.out / stale).unlink()
    generate(ns.out)
    print(f"generated {len(generated_files(ns.out))} files into {ns.out}")


if __name__ == "__main__":
    main()
