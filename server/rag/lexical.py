"""What the full-text index sees of a chunk, and how lexical matches are scored.

A chunk's text reaches the index in four parts, each with its own Postgres weight label
so that the ranker (BM25, see ``store.keyword_search``) can count them differently:

* ``A`` — the chunk's context: its document's title and the section heading it sits
  under. Only a document's first chunk contains the title; without this a question
  naming the page ("Germany parental leave: ...") cannot find its later sections.
* ``D`` — the chunk's own text (Postgres' default label, so rows written before weights
  existed read as plain body text).
* ``C`` — cross-reference sentences ("See also ALERT-5428.", "Related form: HR-221b").
  A page that only points at an identifier is not the page about it; search engines
  index such text as auxiliary, with a lower weight (Wikipedia's search does this with
  its see-also and navigation text). The cue list is short and conservative.
* ``B`` — the parts of identifier-shaped tokens (``payments.eu.retry_budget_ms`` →
  ``payments eu retry budget ms``), so a query naming part of a flag still matches.
  Postgres' parser already splits hyphenated words; dots, underscores, colons and
  slashes it does not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Sentences that only point elsewhere. Matched at the start of a sentence.
_REFERENCE_CUE = re.compile(
    r"^(?:see also|see|related(?:\s+\w+){0,2}\s*:|compare\b|cf\.|previous\b|earlier\b|"
    r"formerly\b|superseded by\b|replaces\b)", re.IGNORECASE)
_SENTENCE_BREAK = re.compile(r"((?<=[.!?])[ \t]+|\n+)")  # captured: split keeps it
_IDENTIFIER = re.compile(r"\w+(?:[._:/-]\w+)+")
_ID_SEPARATORS = re.compile(r"[._:/-]+")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass(frozen=True)
class LexicalText:
    """The text of one chunk as the index sees it (see the module docstring)."""

    context: str
    body: str
    references: str
    identifier_parts: str


@dataclass(frozen=True)
class Bm25Params:
    """Okapi BM25 with per-label term weights.

    k1 and b are the textbook values (also Lucene's and Elasticsearch's defaults); the
    label weights were chosen on the dev split of bench/rag_eval.py.
    """

    k1: float = 1.2
    b: float = 0.75
    context_weight: float = 2.0    # A
    identifier_weight: float = 1.0  # B
    reference_weight: float = 0.3  # C
    # Each pair of neighbouring query words found side by side in the chunk (as in the
    # query, stop words counted) adds this share of the pair's mean IDF: "bursts of 5
    # requests" is the page that says so, not every page with a 5 somewhere. BM25
    # alone scores words as a bag; proximity is what Lucene's phrase boosts and
    # Vespa's nativeRank add.
    proximity_weight: float = 0.3


def split_references(text: str) -> tuple[str, str]:
    """(body, references): cross-reference sentences moved out of the body."""
    body: list[str] = []
    references: list[str] = []
    pieces = _SENTENCE_BREAK.split(text)  # sentence, break, sentence, break, ...
    for i in range(0, len(pieces), 2):
        sentence = pieces[i]
        separator = pieces[i + 1] if i + 1 < len(pieces) else ""
        if _REFERENCE_CUE.match(sentence):
            references.append(sentence)
            body.append(separator)
        else:
            body.append(sentence + separator)
    return "".join(body), " ".join(references)


def identifier_parts(text: str) -> str:
    """The parts of every identifier-shaped token, space separated."""
    return " ".join(_ID_SEPARATORS.sub(" ", token) for token in _IDENTIFIER.findall(text))


def lexical_text(content: str, context: str) -> LexicalText:
    """The labelled parts of a chunk; an identifier inside a cross-reference keeps the
    reference's low weight, parts included."""
    body, references = split_references(content)
    if references:
        references = f"{references} {identifier_parts(references)}"
    return LexicalText(context=context, body=body, references=references,
                       identifier_parts=identifier_parts(context + "\n" + body))


def chunk_contexts(title: str, text: str, chunks: list[str]) -> list[str]:
    """Each chunk's context: the document title and the heading in force where the chunk
    starts (the last Markdown heading at or before it), as "title › heading".

    Chunks are located in order (they overlap, so each is searched from just after the
    previous one's start); a chunk not found verbatim keeps the previous heading.
    """
    text = text.replace("\r\n", "\n")
    headings = [(m.start(), m.group(1).strip()) for m in _HEADING.finditer(text)]
    contexts: list[str] = []
    cursor = 0
    for chunk in chunks:
        found = text.find(chunk, cursor)
        start = found if found >= 0 else cursor
        cursor = start + 1 if found >= 0 else cursor
        heading = ""
        for offset, name in headings:
            if offset > start:
                break
            heading = name
        first_line = chunk.split("\n", 1)[0]
        match = _HEADING.match(first_line)
        if match:
            heading = match.group(1).strip()
        parts = [p for p in (title.strip(), heading) if p]
        if len(parts) == 2 and parts[0].casefold() == parts[1].casefold():
            parts = parts[:1]
        contexts.append(" › ".join(parts))
    return contexts


def embedding_input(context: str, content: str) -> str:
    """What the embedder sees for a chunk: its context line, then its text."""
    return f"{context}\n\n{content}" if context else content
