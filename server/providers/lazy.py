"""A configured provider whose vendor SDK is loaded on first use, not at start-up.

The four vendor SDKs weigh ~100 MB of resident memory together (anthropic ~44 MB, openai
~26 MB, google-genai ~19 MB, boto3 ~9 MB, measured by importing each here), and most
gateways serve traffic through one or two of the vendors they have configured. So a
provider is a ``LazyProvider`` until its first call: only then is its adapter module
imported and the adapter built.

Importing an SDK takes 0.2-1 s of CPU. The first call imports it in a worker thread (the
event loop keeps serving other calls meanwhile; concurrent first calls wait for the same
import), then builds the adapter in the loop's thread, where its HTTP client belongs.
Later calls go straight to the adapter: ``generate`` adds one coroutine frame, ``stream``
returns the adapter's own iterator.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Callable

from server.providers.base import Completion, Provider, ProviderRequest, StreamEvent


class LazyProvider:
    """``Provider`` that builds its adapter (``build``, which imports ``module``) on first
    use. ``adapter()`` builds it synchronously for callers outside the request path (the
    embedders, built on first use themselves)."""

    def __init__(self, name: str, module: str, build: Callable[[], Provider]) -> None:
        self.name = name
        self._module = module
        self._build = build
        self._adapter: Provider | None = None
        self._lock: asyncio.Lock | None = None

    @property
    def loaded(self) -> bool:
        return self._adapter is not None

    def adapter(self) -> Provider:
        if self._adapter is None:
            self._adapter = self._build()
        return self._adapter

    async def ready(self) -> Provider:
        """The adapter, importing its SDK off the event loop the first time."""
        if self._adapter is None:
            if self._lock is None:
                self._lock = asyncio.Lock()
            async with self._lock:
                if self._adapter is None:
                    await asyncio.to_thread(importlib.import_module, self._module)
                    self._adapter = self._build()
        return self._adapter

    async def generate(self, request: ProviderRequest, timeout_s: float) -> Completion:
        adapter = self._adapter or await self.ready()
        return await adapter.generate(request, timeout_s)

    def stream(self, request: ProviderRequest, timeout_s: float) -> AsyncIterator[StreamEvent]:
        if self._adapter is not None:
            return self._adapter.stream(request, timeout_s)
        return self._first_stream(request, timeout_s)

    async def _first_stream(self, request: ProviderRequest,
                            timeout_s: float) -> AsyncIterator[StreamEvent]:
        events = (await self.ready()).stream(request, timeout_s)
        try:
            async for event in events:
                yield event
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    async def aclose(self) -> None:
        if self._adapter is not None:
            await self._adapter.aclose()


def loaded(provider: Provider) -> Provider:
    """The adapter itself: built now if ``provider`` is a ``LazyProvider`` not yet used."""
    return provider.adapter() if isinstance(provider, LazyProvider) else provider


__all__ = ["LazyProvider", "loaded"]
