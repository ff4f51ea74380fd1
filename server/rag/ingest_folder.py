"""Load a folder of .txt/.md files into a namespace, in batches (``llmgw ingest``).

Document ids are paths relative to the folder, so re-running after editing a few files
re-embeds only those: the ingestor skips a document whose checksum is unchanged. Files
are read and ingested a batch at a time, so memory stays bounded by the batch, not the
folder, and each batch is one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from server.rag.chunking import ChunkingParams
from server.rag.ingest import DocumentInput, Ingestor, Outcome

SUFFIXES = (".txt", ".md", ".markdown")


@dataclass
class Summary:
    documents: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    chunks: int = 0


def find_files(root: Path) -> list[Path]:
    """``root`` itself when it is a file, else its text files (recursively), in path order."""
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def read_document(path: Path, root: Path) -> DocumentInput | None:
    """The document for one file (None when it is blank); its title is the first
    Markdown ``# heading`` near the top, else the file name."""
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


async def ingest_files(ingestor: Ingestor, root: Path, files: Sequence[Path], namespace: str,
                       params: ChunkingParams, batch: int,
                       on_batch: Callable[[int], object] | None = None) -> Summary:
    """Ingest ``files`` (found under ``root`` by ``find_files``) ``batch`` at a time;
    ``on_batch(n)`` is told after each batch how many files it covered (progress)."""
    summary = Summary()
    for start in range(0, len(files), batch):
        chunk = files[start:start + batch]
        docs = [d for d in (read_document(p, root) for p in chunk) if d]
        if docs:
            outcomes, _ = await ingestor.ingest(namespace, docs, params)
            for o in outcomes:
                summary.documents += 1
                summary.chunks += o.chunk_count
                if o.outcome is Outcome.CREATED:
                    summary.created += 1
                elif o.outcome is Outcome.UPDATED:
                    summary.updated += 1
                else:
                    summary.unchanged += 1
        if on_batch is not None:
            on_batch(len(chunk))
    return summary
