"""The text a simulated model produces, and how many tokens a text counts as.

Replies are deterministic (a greeting naming the model, padded with lorem words, or the
scripted `reply`) so tests can assert on exact text and usage; the caller's token cap,
stop sequences and a scripted refusal shape them the same way for every vendor.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from simulator.scenario import Behaviour

_LOREM_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat"
)
_LOREM = tuple(_LOREM_TEXT.split())
_WORD = re.compile(r"\s*\S+(?:\s+$)?")


class FinishReason(enum.Enum):
    """Why generation ended, before each vendor names it (stop / end_turn / STOP …)."""

    END = "end"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"
    CONTENT_FILTER = "content_filter"


@dataclass(frozen=True, slots=True)
class Completion:
    """The output of one call as a list of tokens (each streamed as one delta)."""

    tokens: tuple[str, ...]
    finish: FinishReason
    stop_sequence: str | None = None
    prompt_blocked: bool = False
    """The prompt itself was refused (no output at all), as opposed to a reply cut short."""

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def reply_tokens(model: str, behaviour: Behaviour) -> list[str]:
    """The deterministic reply: the scripted `reply`, or a greeting padded with lorem words."""
    if behaviour.reply is not None:
        return _WORD.findall(behaviour.reply)
    words = ["Hello", " from", f" {model}."]
    n = behaviour.reply_tokens
    words.extend(" " + _LOREM[i % len(_LOREM)] for i in range(max(0, n - len(words))))
    return words[:n]


def compose_completion(
    model: str, behaviour: Behaviour, max_tokens: int | None, stop: Sequence[str] = ()
) -> Completion:
    """Apply the caller's token cap, stop sequences and any scripted refusal to the reply."""
    if behaviour.content_filter == "prompt":
        return Completion((), FinishReason.CONTENT_FILTER, prompt_blocked=True)
    tokens = reply_tokens(model, behaviour)
    if behaviour.content_filter == "response":
        kept = len(tokens) // 2
        if max_tokens is None or kept <= max_tokens:
            return Completion(tuple(tokens[:kept]), FinishReason.CONTENT_FILTER)
    capped = max_tokens is not None and len(tokens) > max_tokens
    if capped:
        tokens = tokens[:max_tokens]
    if stop:
        text = "".join(tokens)
        hits = [(text.find(s), s) for s in stop if s and s in text]
        if hits:
            cut, seq = min(hits)
            return Completion(_truncate_tokens(tokens, cut), FinishReason.STOP_SEQUENCE, seq)
    return Completion(tuple(tokens), FinishReason.LENGTH if capped else FinishReason.END)


def _truncate_tokens(tokens: Sequence[str], cut: int) -> tuple[str, ...]:
    out, used = [], 0
    for tok in tokens:
        if used + len(tok) <= cut:
            out.append(tok)
            used += len(tok)
            continue
        if cut > used:
            out.append(tok[: cut - used])
        break
    return tuple(out)


def count_tokens(text: str) -> int:
    """A rough, deterministic token count: whitespace-separated words."""
    return len(text.split())


def count_prompt_tokens(message_texts: Iterable[str], message_count: int) -> int:
    """Words in every message plus 3 per message (roughly OpenAI's per-message overhead)."""
    return sum(count_tokens(t) for t in message_texts) + 3 * message_count
