"""Grounding: turn retrieved chunks into a labelled context block within a token limit.

The block goes into the system instruction (not a user turn) so the caller's
conversation stays as they sent it; each chunk gets a label ``[n]`` that the model is
told to cite and that comes back in ``citations``. Tokens are estimated with the
gateway's one policy (server/kernel/tokens.py): the vendor's tokenizer is not known here, and
the limit is a cap on prompt growth, not an exact count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from server.rag.store import Hit
from server.kernel.tokens import CHARS_PER_TOKEN, estimate_tokens

INSTRUCTION = (
    "Answer using the sources below. Cite every source you use by its label in square "
    "brackets, e.g. [1]. If the sources do not contain the answer, say that they do not.")


@dataclass(frozen=True)
class UsedChunk:
    label: str
    hit: Hit


@dataclass(frozen=True)
class GroundedContext:
    system_text: str  # to append to the system instruction; empty when nothing was found
    used: list[UsedChunk]


def _header(label: str, hit: Hit) -> str:
    parts = [label, hit.title or hit.document_id]
    if hit.source:
        parts.append(f"({hit.source})")
    return " ".join(parts)


def build_context(hits: Sequence[Hit], max_tokens: int) -> GroundedContext:
    """Chunks in rank order while they fit; the first one is cut to fit if it alone is
    too long (a grounded answer with no source would be worse)."""
    if not hits:
        return GroundedContext(
            "No sources were found for this question: say that you could not find it in "
            "the knowledge base rather than guessing.", [])
    remaining = max_tokens - estimate_tokens(INSTRUCTION) - 4
    blocks: list[str] = []
    used: list[UsedChunk] = []
    for hit in hits:
        label = f"[{len(used) + 1}]"
        block = f"{_header(label, hit)}\n{hit.content.strip()}"
        cost = estimate_tokens(block) + 1
        if cost > remaining:
            if used:
                continue  # a later, shorter chunk may still fit
            block = block[:max(0, remaining - 1) * CHARS_PER_TOKEN]
            if not block:
                break
            cost = remaining
        blocks.append(block)
        used.append(UsedChunk(label, hit))
        remaining -= cost
    return GroundedContext(INSTRUCTION + "\n\nSources:\n\n" + "\n\n".join(blocks), used)
