"""The retrieval evaluation corpus: Python standard-library docstrings, built at run time.

Every public function and class (docstring of at least 120 characters) of ~70 standard
modules becomes one document, id = its qualified name (``shutil.rmtree``), title = the
same, text = a heading plus the docstring (first 3000 characters). Nothing is downloaded
and nothing large is committed: the interpreter running the bench is the source. Objects
re-exported by several modules count once, under the first module listed.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path

MODULES = [
    "os", "os.path", "shutil", "json", "re", "subprocess", "pathlib", "itertools", "functools",
    "collections", "datetime", "time", "random", "math", "statistics", "string", "textwrap",
    "hashlib", "base64", "zlib", "gzip", "tarfile", "zipfile", "csv", "sqlite3", "socket", "ssl",
    "urllib.parse", "urllib.request", "http.client", "email.utils", "logging", "argparse",
    "threading", "queue", "asyncio", "heapq", "bisect", "copy", "pickle", "tempfile", "glob",
    "fnmatch", "uuid", "secrets", "hmac", "struct", "io", "contextlib", "dataclasses", "enum",
    "typing", "inspect", "traceback", "warnings", "unittest", "difflib", "pprint", "operator",
    "signal", "platform", "sys", "locale", "calendar", "decimal", "fractions", "ipaddress",
    "mimetypes", "shlex", "configparser",
]
QUERIES = Path(__file__).parent / "data" / "rag" / "queries.txt"


@dataclass(frozen=True)
class Doc:
    id: str
    text: str


@dataclass(frozen=True)
class Query:
    kind: str
    text: str
    relevant: frozenset[str]


def build_corpus(min_chars: int = 120, max_chars: int = 3000) -> list[Doc]:
    docs: list[Doc] = []
    seen: set[int] = set()
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        root = module_name.split(".")[0]
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)
                                            or inspect.isbuiltin(obj)):
                continue
            owner = getattr(obj, "__module__", "") or ""
            if module_name != "os.path" and not owner.lstrip("_").startswith(root.lstrip("_")):
                continue
            doc = inspect.getdoc(obj) or ""
            if len(doc) < min_chars or id(obj) in seen:
                continue
            seen.add(id(obj))
            qualified = f"{module_name}.{name}"
            docs.append(Doc(qualified, f"# {qualified}\n\n{doc[:max_chars]}"))
    return docs


def load_queries(corpus_ids: set[str]) -> tuple[list[Query], int]:
    """The hand-written queries whose relevant documents exist in this Python's corpus;
    also how many were dropped (a stdlib version without those docstrings)."""
    queries, dropped = [], 0
    for line in QUERIES.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        kind, text, ids = (part.strip() for part in line.split("|"))
        relevant = frozenset(i for i in ids.split(",") if i in corpus_ids)
        if relevant:
            queries.append(Query(kind, text, relevant))
        else:
            dropped += 1
    return queries, dropped


if __name__ == "__main__":
    corpus = build_corpus()
    qs, dropped = load_queries({d.id for d in corpus})
    print(f"{len(corpus)} documents, {len(qs)} queries ({dropped} dropped)")
