"""``llmgw ingest PATH --namespace NS``: load a folder of .txt/.md files into a namespace.

Talks to the database directly (embedded or DATABASE_URL), like ``llmgw migrate``: bulk
loading a knowledge base should not need a running gateway or a token. The folder walk
and batching are domain logic (``server.rag.ingest_folder``); this module checks the
arguments, shows progress and reports.

Exit status: 0 done, 1 the ingest failed (e.g. the namespace uses another embedding
model), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from server.cli.options import load, with_config

if TYPE_CHECKING:
    from server.kernel.config import GatewayConfig
    from server.rag.chunking import ChunkingParams
    from server.rag.ingest_folder import Summary


def register(commands: argparse._SubParsersAction) -> None:
    ingest = with_config(commands.add_parser(
        "ingest", help="load .txt/.md files into a namespace"))
    ingest.add_argument("path", type=Path, help="a folder (searched recursively) or one file")
    ingest.add_argument("--namespace", required=True, help="the retrieval namespace")
    ingest.add_argument("--chunk-size", type=int, help="characters per chunk (default: config)")
    ingest.add_argument("--chunk-overlap", type=int, help="overlap in characters")
    ingest.add_argument("--batch", type=int, default=32, help="documents per transaction")
    ingest.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    from server.kernel.errors import GatewayError
    from server.rag.namespaces import namespace_problem
    from server.serve import prepare_database

    config = load(ns)
    if not ns.path.exists():
        return _usage_error(f"{ns.path}: no such file or folder")
    problem = namespace_problem(ns.namespace)
    if problem:
        return _usage_error(f"--namespace {ns.namespace!r}: {problem}")
    params = _chunking(config, ns.chunk_size, ns.chunk_overlap)
    if params is None:
        return _usage_error("--chunk-overlap must be smaller than --chunk-size")
    url = prepare_database(config)
    started = time.perf_counter()
    try:
        s = asyncio.run(_ingest(config, url, ns.path, ns.namespace, params, ns.batch))
    except GatewayError as error:
        print(f"llmgw ingest: {error.message}", file=sys.stderr)
        return 1
    print(f"namespace {ns.namespace}: {s.documents} documents ({s.created} new,"
          f" {s.updated} updated, {s.unchanged} skipped unchanged), {s.chunks} chunks,"
          f" {time.perf_counter() - started:.1f} s")
    return 0


def _usage_error(message: str) -> int:
    print(f"llmgw ingest: {message}", file=sys.stderr)
    return 2


def _chunking(config: GatewayConfig, size: int | None,
              overlap: int | None) -> ChunkingParams | None:
    """The chunking the flags ask for, defaulting to the config's; None when impossible.
    The config's overlap is shrunk to fit a smaller ``--chunk-size``; an explicit one is not."""
    from server.rag.chunking import ChunkingParams

    size = size or config.rag.chunk_size
    try:
        if overlap is None:
            return ChunkingParams(size, min(config.rag.chunk_overlap, size - 1))
        return ChunkingParams(size, overlap)
    except ValueError:
        return None


async def _ingest(config: GatewayConfig, url: str, root: Path, namespace: str,
                  params: ChunkingParams, batch: int) -> Summary:
    from tqdm import tqdm

    from server.kernel.db.engine import create_engine
    from server.providers.registry import standalone_embedders
    from server.rag.ingest_folder import find_files, ingest_files
    from server.rag.runtime import RagRuntime

    engine = create_engine(url, 2)
    try:
        # The configured embedders (rag.embedder may name a vendor model), as the gateway has.
        async with standalone_embedders(config, os.environ) as embedders:
            rag = RagRuntime.from_config(config.rag, engine, embedders)
            files = find_files(root)
            with tqdm(total=len(files), unit="doc", file=sys.stderr) as bar:
                return await ingest_files(rag.ingestor, root, files, namespace, params, batch,
                                          on_batch=bar.update)
    finally:
        await engine.dispose()
