"""``llmgw ingest PATH --namespace NS``: load a folder of .txt/.md files into a namespace.

Talks to the database directly (embedded or DATABASE_URL), like ``llmgw migrate``: bulk
loading a knowledge base should not need a running gateway or a token. Document ids are
paths relative to PATH, so re-running after editing a few files re-embeds only those.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from server.config import GatewayConfig
from server.errors import GatewayError
from server.rag.chunking import ChunkingParams
from server.rag.ingest import DocumentInput, Outcome

SUFFIXES = (".txt", ".md", ".markdown")


@dataclass
class Summary:
    documents: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0
    seconds: float = 0.0


def find_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def read_document(path: Path, root: Path) -> DocumentInput | None:
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.strip():
        return None
    doc_id = path.name if root.is_file() else str(path.relative_to(root))
    title = path.stem
    for line in text.splitlines()[:20]:
        if line.startswith("# "):
            title = line[2:].strip()
            break
    return DocumentInput(id=doc_id, text=text, title=title, source=str(path.resolve()),
                         metadata={"path": doc_id, "suffix": path.suffix.lower()})


async def ingest_folder(config: GatewayConfig, database_url: str, root: Path, namespace: str,
                        params: ChunkingParams, batch: int, progress: bool = True) -> Summary:
    from tqdm import tqdm

    from server.db.engine import create_engine
    from server.rag.runtime import RagRuntime

    engine = create_engine(database_url, 2)
    summary = Summary()
    started = time.perf_counter()
    try:
        rag = RagRuntime.from_config(config.rag, engine)
        files = find_files(root)
        with tqdm(total=len(files), unit="doc", disable=not progress, file=sys.stderr) as bar:
            for start in range(0, len(files), batch):
                docs = [d for d in (read_document(p, root) for p in files[start:start + batch]) if d]
                if docs:
                    outcomes, _ = await rag.ingestor.ingest(namespace, docs, params)
                    for o in outcomes:
                        summary.documents += 1
                        summary.chunks += o.chunk_count
                        if o.outcome is Outcome.CREATED:
                            summary.created += 1
                        elif o.outcome is Outcome.UPDATED:
                            summary.updated += 1
                        else:
                            summary.unchanged += 1
                bar.update(len(files[start:start + batch]))
    finally:
        await engine.dispose()
    summary.seconds = time.perf_counter() - started
    return summary


def run_ingest(config: GatewayConfig, root: Path, namespace: str, chunk_size: int | None,
               chunk_overlap: int | None, batch: int) -> int:
    """The CLI command; returns the exit code."""
    from server.handlers.retrieval import NAMESPACE_RE
    from server.serve import prepare_database

    if not root.exists():
        print(f"llmgw ingest: {root}: no such file or folder", file=sys.stderr)
        return 2
    if not NAMESPACE_RE.match(namespace):
        print(f"llmgw ingest: --namespace {namespace!r}: letters, digits and _ . : @ / - only",
              file=sys.stderr)
        return 2
    size = chunk_size or config.rag.chunk_size
    overlap = config.rag.chunk_overlap if chunk_overlap is None else chunk_overlap
    try:
        params = ChunkingParams(size, min(overlap, size - 1) if chunk_overlap is None else overlap)
    except ValueError:
        print("llmgw ingest: --chunk-overlap must be smaller than --chunk-size", file=sys.stderr)
        return 2
    url = prepare_database(config)
    try:
        s = asyncio.run(ingest_folder(config, url, root, namespace, params, batch))
    except GatewayError as error:
        print(f"llmgw ingest: {error.message}", file=sys.stderr)
        return 1
    print(f"namespace {namespace}: {s.documents} documents ({s.created} new, {s.updated} updated,"
          f" {s.unchanged} skipped unchanged), {s.chunks} chunks, {s.seconds:.1f} s")
    return 0
