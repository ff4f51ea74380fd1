"""Shaping a conversation for vendors with strict turn rules."""

from __future__ import annotations

from server.providers.base import ChatMessage


def merge_consecutive_roles(messages: tuple[ChatMessage, ...]) -> list[ChatMessage]:
    """Anthropic (directly or on Bedrock) requires user/assistant turns to alternate:
    runs of the same role become one turn, their texts separated by a blank line."""
    turns: list[ChatMessage] = []
    for message in messages:
        if turns and turns[-1].role == message.role:
            turns[-1] = ChatMessage(message.role, turns[-1].content + "\n\n" + message.content)
        else:
            turns.append(message)
    return turns
