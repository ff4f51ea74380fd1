"""What each target can do beyond plain text, and what a request needs.

A request with tools needs targets that call tools; one with a JSON response format,
targets with a JSON mode (native or emulated); one with images, targets that see images.
The router skips a target lacking a needed capability (attempt outcome
``skipped_unsupported`` naming it) instead of sending a request the vendor would refuse
or, worse, silently ignore (a text-only model answering as if the image were not there).

Capabilities are configured per ``provider/model`` (``capabilities:`` in the gateway
config) and shown in ListModels. A model that is not listed is assumed to have them all:
the vendor is the judge, and its refusal is an ordinary failed attempt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum

from server.fallback.chain import Target
from server.providers.base import ProviderRequest


class Capability(StrEnum):
    TOOLS = "tools"
    JSON = "json"
    IMAGES = "images"


ALL = frozenset(Capability)


def needed(request: ProviderRequest) -> frozenset[Capability]:
    """The capabilities ``request`` needs of the target that serves it. A conversation
    that carries tool calls or results needs tools even with no tool declared: vendors
    refuse tool blocks without a tool configuration."""
    needs: set[Capability] = set()
    if request.tools or any(m.tool_calls or m.tool_call_id for m in request.messages):
        needs.add(Capability.TOOLS)
    if request.response_format is not None and request.response_format.json:
        needs.add(Capability.JSON)
    if any(m.images for m in request.messages):
        needs.add(Capability.IMAGES)
    return frozenset(needs)


class Capabilities:
    """The configured capabilities of every listed ``provider/model``."""

    def __init__(self, listed: Mapping[str, Mapping[str, Iterable[str]]] | None = None) -> None:
        self._listed = {(provider, model): frozenset(Capability(c) for c in caps)
                        for provider, models in (listed or {}).items()
                        for model, caps in models.items()}

    def of(self, provider: str, model: str) -> frozenset[Capability]:
        return self._listed.get((provider, model), ALL)

    def missing(self, target: Target, needs: frozenset[Capability]) -> frozenset[Capability]:
        """What ``target`` lacks of ``needs`` (empty: it can serve the request)."""
        if not needs:
            return needs
        return needs - self.of(target.provider, target.model)


__all__ = ["ALL", "Capabilities", "Capability", "needed"]
