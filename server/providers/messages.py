"""Shaping a conversation for vendors with strict turn rules."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from server.providers.base import ChatMessage

C = TypeVar("C")


def merge_turns(messages: Iterable[ChatMessage], turn: Callable[[ChatMessage], tuple[str, C]],
                join: Callable[[C, C], C]) -> list[dict[str, Any]]:
    """Anthropic (directly or on Bedrock) requires user/assistant turns to alternate: each
    message becomes ``(vendor role, content)`` through ``turn``, and runs of one vendor
    role become one turn through ``join`` (tool results are user turns, so they merge with
    the user text that follows them)."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        role, content = turn(message)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = join(turns[-1]["content"], content)
        else:
            turns.append({"role": role, "content": content})
    return turns
