"""`llmgw ingest PATH --namespace NS` loads a folder and skips unchanged files next time."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

from llmgateway.v1 import retrieval_pb2 as pb
from llmgateway.v1 import retrieval_pb2_grpc

from tests.rag.conftest import RAG_AUTH
from tests.support.gateway import ROOT


def run_ingest(folder: Path, namespace: str, pg_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "ingest", str(folder), "--namespace", namespace],
        cwd=ROOT, env={**os.environ, "DATABASE_URL": pg_url, "PYTHONPATH": str(ROOT)},
        capture_output=True, text=True, timeout=120, check=False)


async def test_ingest_folder_then_rerun_skips_unchanged(
        tmp_path: Path, pg_url: str, retrieval: retrieval_pb2_grpc.RetrievalServiceStub) -> None:
    (tmp_path / "guides").mkdir()
    (tmp_path / "shipping.md").write_text("# Shipping policy\n\nParcels leave the warehouse "
                                          "every Monday and Thursday.\n")
    (tmp_path / "guides" / "returns.txt").write_text("Returns are accepted within 30 days.\n")
    (tmp_path / "image.png").write_bytes(b"\x89PNG not text")
    namespace = f"cli-{uuid.uuid4().hex[:8]}"

    first = run_ingest(tmp_path, namespace, pg_url)
    assert first.returncode == 0, first.stderr
    assert "2 documents (2 new, 0 updated, 0 skipped unchanged), 2 chunks" in first.stdout

    (tmp_path / "guides" / "returns.txt").write_text("Returns are accepted within 45 days.\n")
    second = run_ingest(tmp_path, namespace, pg_url)
    assert "2 documents (0 new, 1 updated, 1 skipped unchanged)" in second.stdout

    reply = await retrieval.Retrieve(pb.RetrieveRequest(
        namespace=namespace, query="when do parcels ship?", top_k=1), metadata=RAG_AUTH)
    top = reply.chunks[0]
    assert (top.document_id, top.title) == ("shipping.md", "Shipping policy")


def test_ingest_rejects_a_missing_folder(tmp_path: Path, pg_url: str) -> None:
    result = run_ingest(tmp_path / "nope", "ns", pg_url)
    assert result.returncode == 2 and "no such file or folder" in result.stderr
