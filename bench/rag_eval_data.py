"""Build the retrieval evaluation set (bench/data/rag_eval/) from the hand-written families.

The families (rag_eval_families_{a,b,c}.py) hold the prose; this script only fills the
slots, numbers the opaque identifiers and writes the judgments, deterministically, so
the committed data files can be regenerated and diffed:

    python bench/rag_eval_data.py [--out bench/data/rag_eval]

Documents: one per family variant (policy pages, runbooks, postmortems, product pages),
markdown with a ``#`` title and ``##`` sections. Near-identical siblings differ in region,
year, tier or version, and in the facts that go with them.

Queries, four per document, one of each kind:

- ``paraphrase``: the topic and the variant in other words than the page uses;
- ``identifier``: an opaque identifier (form number, error code, alert, ticket, flag);
- ``disambiguation``: names a detail only one of the near-identical siblings has;
- ``section``: asks about a later section of the page, naming only the page's topic, so
  the answer's chunk does not say what it is about: only the title does.

Judgments: 2 = the document that answers; 1 = related (a sibling page of the same
family, or for an identifier the one page that mentions it as "see also").
Split: within each kind, queries sorted by a hash of their id alternate dev / heldout,
so the split is ~50/50 per kind; a second phrasing of every query (``-alt``) is dev.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from rag_eval_families_a import GROUP_SECTIONS, POLICIES, Family
from rag_eval_families_b import RUNBOOKS
from rag_eval_families_c import POSTMORTEMS, PRODUCT

OUT = Path(__file__).parent / "data" / "rag_eval"
KINDS = ("paraphrase", "identifier", "disambiguation", "section")
GROUPS: tuple[tuple[str, list[Family]], ...] = (
    ("policy", POLICIES), ("runbook", RUNBOOKS), ("postmortem", POSTMORTEMS),
    ("product", PRODUCT))
OWNERS = ("People Operations", "Site Reliability Engineering", "Finance", "Security",
          "Customer Support", "Legal and Privacy", "Platform Engineering")
REVIEWED = ("January", "March", "April", "June", "September", "November")
# Which section of each family answers its ``section`` query templates (one per template,
# or one for all): its first paragraph is written to the query as ``answer_text``, so the
# bench can tell whether the chunk holding the answer, not just the page, was found.
SECTION_ANSWERS: dict[str, tuple[str, ...]] = {
    "parental-leave": ("Returning to work",),
    "travel-expenses": ("Changes from the previous version", "Submitting a claim"),
    "home-office": ("Ergonomics check",), "sick-leave": ("Caring for others",),
    "on-call-pay": ("Limits",), "data-retention": ("Deletion job", "Access requests"),
    "laptop-security": ("Lost or stolen devices",), "gifts": ("The register",),
    "pg-failover": ("Escalation",), "kafka-lag": ("What not to do",),
    "cert-rotation": ("Verification",), "payment-timeouts": ("Communication", "Recovery"),
    "disk-full": ("Safe to delete",), "flag-rollback": ("If the change does not apply",),
    "dns-change": ("Rolling back",), "redis-eviction": ("Escalation",),
    "deploy-freeze": ("After the freeze",), "pm-checkout": ("Action items",),
    "pm-login": ("Detection",), "pm-billing": ("Customer communication",),
    "pm-search": ("Recovery",), "pm-email": ("Changes",), "support-sla": ("Service credits",),
    "api-limits": ("Raising the limit",), "data-export": ("Errors",),
    "onboarding": ("End of the first week",), "vendor-review": ("Renewal",),
    "office-access": ("Out of hours",),
}


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    metadata: dict[str, str]


@dataclass(frozen=True)
class Query:
    id: str
    kind: str
    text: str
    judgments: dict[str, int]
    split: str
    answer_text: str = ""


def stable_int(key: str) -> int:
    """A number that depends only on ``key`` (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def make_identifier(pattern: str, key: str, variant: dict[str, str], taken: set[str]) -> str:
    """The variant's opaque identifier: ``pattern`` with {n} (digits), {s} (a letter) or a
    variant field such as {flag}; numbers are derived from ``key`` and bumped on a clash."""
    salt = 0
    while True:
        h = stable_int(f"{key}:{salt}")
        digits = 5 if pattern.startswith("INC-") else 3 if "{s}" in pattern else 4
        n = 10 ** (digits - 1) + h % (9 * 10 ** (digits - 1))
        ident = pattern.format(n=n, s="abcdefgh"[(h >> 20) % 8], **variant)
        if ident not in taken:
            taken.add(ident)
            return ident
        salt += 1


def shared_sections(group: str, page_key: str) -> list[tuple[str, list[str]]]:
    """The group's common sections for one page, one paragraph of each picked by hash."""
    out = []
    for heading, choices in GROUP_SECTIONS[group]:
        out.append((heading, [choices[stable_int(f"{page_key}/{heading}") % len(choices)]]))
    return out


def render(family: Family, fields: dict[str, str], shared: list[tuple[str, list[str]]],
           footer: str) -> tuple[str, str]:
    """(title, markdown text) of one variant: the title as ``#``, the family's overview,
    the group's shared sections, then the family's own sections."""
    title = family["title"].format(**fields)
    parts = [f"# {title}"]
    sections = family["sections"]
    for heading, paragraphs in [sections[0], *shared, *sections[1:]]:
        if heading:
            parts.append(f"## {heading}")
        parts.extend(p.format(**fields) if "{" in p else p for p in paragraphs)
    parts.append("## About this page")
    parts.append(footer)
    return title, "\n\n".join(parts) + "\n"


def footer_for(group: str, slug: str, index: int) -> str:
    """A short ownership note, like real wiki pages carry; varies by family and variant."""
    h = stable_int(f"{slug}/{index}/footer")
    owner = OWNERS[h % len(OWNERS)]
    month = REVIEWED[(h >> 8) % len(REVIEWED)]
    year = 2023 + (h >> 16) % 3
    return (f"Owner: {owner}. Last reviewed in {month} {year}. This {group} page is the "
            f"source of truth; copies in slide decks or chat messages may be out of date. "
            f"Suggest changes through the documentation repository.")


def answer_paragraph(family: Family, template_index: int, fields: dict[str, str]) -> str:
    """The first paragraph of the section that answers section template ``template_index``."""
    headings = SECTION_ANSWERS[family["slug"]]
    heading = headings[template_index % len(headings)]
    paragraphs = next(p for h, p in family["sections"] if h == heading)
    return paragraphs[0].format(**fields)


RawQuery = tuple[str, str, str, dict[str, int], str]  # id, kind, text, judgments, answer
ALT = "-alt"  # id suffix of a query's second phrasing


def build_family(group: str, family: Family, taken: set[str]
                 ) -> tuple[list[Document], list[RawQuery], list[tuple[str, str]]]:
    """The family's documents, its (query id, kind, text, judgments) before the split, and
    (identifier query id, identifier) pairs for the check."""
    slug = family["slug"]
    variants: list[dict[str, str]] = family["variants"]
    doc_ids = [f"{slug}-{i + 1}" for i in range(len(variants))]
    idents = [make_identifier(family["ident"], f"{slug}/{i}", v, taken)
              for i, v in enumerate(variants)]
    docs: list[Document] = []
    queries: list[RawQuery] = []
    ident_of: list[tuple[str, str]] = []
    for i, variant in enumerate(variants):
        see_also = idents[(i + 1) % len(variants)]
        fields = {**variant, "ident": idents[i], "see_also": see_also}
        title, text = render(family, fields, shared_sections(group, doc_ids[i]),
                             footer_for(group, slug, i))
        docs.append(Document(doc_ids[i], title, text,
                             {"family": slug, "group": group, "variant": variant["label"]}))
        plain = {**fields, "ident": idents[i].strip("`")}
        siblings = {d: 1 for d in doc_ids if d != doc_ids[i]}
        for kind in KINDS:
            templates: list[str] = family["queries"][kind]
            if kind == "identifier":
                previous = doc_ids[(i - 1) % len(variants)]  # mentions it as "see also"
                judgments = {doc_ids[i]: 2, previous: 1} if previous != doc_ids[i] else {
                    doc_ids[i]: 2}
            else:
                judgments = {doc_ids[i]: 2, **siblings}
            # The variant's own template, then the family's other phrasing (``-alt``).
            for shift, suffix in ((0, ""), (1, ALT))[:len(templates)]:
                t = (i + shift) % len(templates)
                qid = f"{doc_ids[i]}-{kind}{suffix}"
                answer = answer_paragraph(family, t, fields) if kind == "section" else ""
                if kind == "identifier":
                    ident_of.append((qid, plain["ident"]))
                queries.append((qid, kind, templates[t].format(**plain), judgments, answer))
    return docs, queries, ident_of


def assign_splits(raw: list[RawQuery]) -> list[Query]:
    """Within each kind, sort the first phrasings by a hash of the id and alternate dev /
    heldout; every second phrasing (``-alt``) is dev, so tuning has more to learn from
    while the held-out split stays exactly the queries it was before they were added."""
    out: list[Query] = []
    for kind in KINDS:
        ids = sorted((q for q in raw if q[1] == kind and not q[0].endswith(ALT)),
                     key=lambda q: stable_int(q[0]))
        for n, (qid, k, text, judgments, answer) in enumerate(ids):
            out.append(Query(qid, k, text, judgments, "dev" if n % 2 == 0 else "heldout",
                             answer))
    out.extend(Query(qid, k, text, judgments, "dev", answer)
               for qid, k, text, judgments, answer in raw if qid.endswith(ALT))
    return sorted(out, key=lambda q: q.id)


def answer_of(query: Query) -> str:
    return next(d for d, g in query.judgments.items() if g == 2)


def check(docs: list[Document], queries: list[Query], idents: dict[str, str]) -> None:
    """Fail loudly on data that would make the metrics lie: an identifier found in a page
    not judged for it, a query text that two queries share, a missing document.

    ``idents``: identifier query id → the identifier it asks about.
    """
    ids = {d.id for d in docs}
    docs_by_id = {d.id: d for d in docs}
    texts = Counter(q.text.lower() for q in queries)
    dupes = [t for t, n in texts.items() if n > 1]
    if dupes:
        raise SystemExit(f"duplicate query texts: {dupes[:5]}")
    for q in queries:
        if not set(q.judgments) <= ids:
            raise SystemExit(f"{q.id}: judged documents missing")
        if q.answer_text and q.answer_text not in docs_by_id[answer_of(q)].text:
            raise SystemExit(f"{q.id}: answer text not in its document")
        if q.id not in idents:
            continue
        pattern = rf"(?<![\w.-]){re.escape(idents[q.id])}(?![\w-])"
        found = {d.id for d in docs if re.search(pattern, d.text)}
        if found != set(q.judgments):
            raise SystemExit(f"{q.id}: {idents[q.id]} in {sorted(found)}, "
                             f"judged {sorted(q.judgments)}")


def build() -> tuple[list[Document], list[Query]]:
    taken: set[str] = set()
    docs: list[Document] = []
    raw: list[RawQuery] = []
    ident_of: list[tuple[str, str]] = []
    for group, families in GROUPS:
        for family in families:
            d, q, i = build_family(group, family, taken)
            docs.extend(d)
            raw.extend(q)
            ident_of.extend(i)
    # A second phrasing that reads exactly like another query (two siblings share the
    # detail it names) would be judged two ways: left out.
    texts = Counter(q[2].lower() for q in raw)
    raw = [q for q in raw if not q[0].endswith(ALT) or texts[q[2].lower()] == 1]
    queries = assign_splits(raw)
    idents = {qid: ident for qid, ident in ident_of}
    check(docs, queries, idents)
    return docs, queries


def write(out: Path, docs: list[Document], queries: list[Query]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "documents.jsonl").open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d.id, "title": d.title, "text": d.text,
                                "metadata": d.metadata}, ensure_ascii=False) + "\n")
    with (out / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q in queries:
            row: dict[str, Any] = {"id": q.id, "kind": q.kind, "text": q.text,
                                   "judgments": q.judgments, "split": q.split}
            if q.answer_text:
                row["answer_text"] = q.answer_text
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    ns = parser.parse_args()
    docs, queries = build()
    write(ns.out, docs, queries)
    per = Counter((q.kind, q.split) for q in queries)
    print(f"{len(docs)} documents, {len(queries)} queries -> {ns.out}")
    for kind in KINDS:
        print(f"  {kind:<15} dev {per[(kind, 'dev')]:>3}  heldout {per[(kind, 'heldout')]:>3}")


if __name__ == "__main__":
    main()
