"""Recursive text splitter: paragraphs first, then lines, sentences, words, characters.

Why recursive: a chunk that ends mid-sentence embeds worse and reads worse in a citation.
Pieces are split at the coarsest separator that makes them fit ``size`` characters, then
merged greedily back up to ``size``; neighbouring chunks share up to ``overlap``
characters taken from whole pieces at the end of the previous chunk, so a fact that
straddles a boundary is found from either side.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")
_SEPARATORS: tuple[str | re.Pattern[str], ...] = ("\n\n", "\n", _SENTENCE_END, " ")


@dataclass(frozen=True)
class ChunkingParams:
    size: int = 1000
    overlap: int = 150

    def __post_init__(self) -> None:
        if self.size <= 0 or not 0 <= self.overlap < self.size:
            raise ValueError("need 0 <= overlap < size")


def _split(text: str, separator: str | re.Pattern[str]) -> list[str]:
    """Split keeping the separator at the end of each piece (so joining restores text)."""
    if isinstance(separator, str):
        parts = text.split(separator)
        return [p + separator for p in parts[:-1]] + [parts[-1]]
    pieces, start = [], 0
    for match in separator.finditer(text):
        pieces.append(text[start:match.end()])
        start = match.end()
    pieces.append(text[start:])
    return pieces


def _atoms(text: str, size: int, level: int = 0) -> list[str]:
    """Pieces no longer than ``size``, each cut at the coarsest separator possible."""
    if len(text) <= size:
        return [text]
    if level >= len(_SEPARATORS):
        return [text[i:i + size] for i in range(0, len(text), size)]
    out: list[str] = []
    for piece in _split(text, _SEPARATORS[level]):
        if piece:
            out.extend(_atoms(piece, size, level + 1) if len(piece) > size else [piece])
    return out


def split_text(text: str, params: ChunkingParams = ChunkingParams()) -> list[str]:
    """Chunks of at most ``params.size`` characters (stripped), in document order."""
    atoms = _atoms(text.replace("\r\n", "\n"), params.size)
    chunks: list[str] = []
    current: list[str] = []
    length = 0
    for atom in atoms:
        if current and length + len(atom) > params.size:
            chunks.append("".join(current))
            # Carry whole trailing pieces (up to `overlap` chars) into the next chunk.
            carried: list[str] = []
            carried_len = 0
            for piece in reversed(current):
                if carried_len + len(piece) > params.overlap:
                    break
                carried.insert(0, piece)
                carried_len += len(piece)
            if carried_len + len(atom) > params.size:
                carried, carried_len = [], 0
            current, length = carried, carried_len
        current.append(atom)
        length += len(atom)
    if current:
        chunks.append("".join(current))
    stripped = [c.strip() for c in chunks]
    return [c for c in stripped if c]
