"""Vendor embedding APIs behind the retrieval package's ``Embedder`` interface.

The interface (see ``server/rag/embedders.py``): ``name`` (stored with every chunk, so a
namespace never mixes models), ``dimension``, and ``async embed(texts)`` returning a
float32 array of shape (len(texts), dimension) in the order of ``texts``; batching is the
embedder's business. Failures raise the same classified ``ProviderError`` as generation.

- OpenAI ``text-embedding-3-*`` (any OpenAI-compatible endpoint), with ``dimensions``.
- Gemini ``embedContent`` / ``batchEmbedContents`` with ``output_dimensionality``.
- Bedrock Titan text embeddings v2 (one InvokeModel call per text, run concurrently in
  the Bedrock provider's thread pool).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from openai import AsyncOpenAI

from server.providers import gemini as gemini_adapter
from server.providers import openai as openai_adapter
from server.providers.bedrock import BedrockProvider
from server.providers.bedrock import classify as classify_bedrock


def _matrix(vectors: Sequence[Sequence[float]], dimension: int) -> np.ndarray:
    out = np.asarray(vectors, dtype=np.float32).reshape(len(vectors), dimension)
    return out


class OpenAIEmbedder:
    """``text-embedding-3-small`` / ``-large`` (shortened to ``dimension``)."""

    def __init__(self, *, model: str, dimension: int, base_url: str | None, api_key: str,
                 timeout_s: float = 30.0, batch_size: int = 256) -> None:
        self.name = f"openai/{model}"
        self.dimension = dimension
        self._model = model
        self._batch = batch_size
        self._client = AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0,
                                   timeout=timeout_s)

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self._batch):
            try:
                response = await self._client.embeddings.create(
                    model=self._model, input=list(texts[start:start + self._batch]),
                    dimensions=self.dimension, encoding_format="float")
            except Exception as exc:  # noqa: BLE001 - classify() re-raises what it does not know
                raise openai_adapter.classify(exc) from None
            vectors += [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
        return _matrix(vectors, self.dimension)

    async def aclose(self) -> None:
        await self._client.close()


class GeminiEmbedder:
    """Gemini embeddings (e.g. ``gemini-embedding-001``, ``text-embedding-004``)."""

    def __init__(self, *, model: str, dimension: int, base_url: str | None, api_key: str,
                 timeout_s: float = 30.0, batch_size: int = 100) -> None:
        from google import genai
        from google.genai import types

        self.name = f"gemini/{model}"
        self.dimension = dimension
        self._model = model
        self._batch = batch_size
        self._types = types
        self._client = genai.Client(api_key=api_key, http_options=types.HttpOptions(
            base_url=base_url, timeout=int(timeout_s * 1000),
            retry_options=types.HttpRetryOptions(attempts=1)))

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors: list[list[float]] = []
        config = self._types.EmbedContentConfig(output_dimensionality=self.dimension)
        for start in range(0, len(texts), self._batch):
            try:
                response = await self._client.aio.models.embed_content(
                    model=self._model, contents=list(texts[start:start + self._batch]),
                    config=config)
            except Exception as exc:  # noqa: BLE001
                raise gemini_adapter.classify(exc) from None
            vectors += [list(e.values or ()) for e in response.embeddings or ()]
        return _matrix(vectors, self.dimension)

    async def aclose(self) -> None:
        await self._client.aio.aclose()


class TitanEmbedder:
    """Amazon Titan text embeddings v2 on Bedrock (256, 512 or 1024 dimensions)."""

    def __init__(self, bedrock: BedrockProvider, *, model: str = "amazon.titan-embed-text-v2:0",
                 dimension: int = 1024, region: str = "", concurrency: int = 8) -> None:
        self.name = f"bedrock/{model}"
        self.dimension = dimension
        self._bedrock = bedrock
        self._model = model
        self._region = region or bedrock.default_region
        self._slots = asyncio.Semaphore(concurrency)

    def _invoke(self, text: str) -> list[float]:
        response = self._bedrock.runtime_client(self._region).invoke_model(
            modelId=self._model, contentType="application/json", accept="application/json",
            body=json.dumps({"inputText": text, "dimensions": self.dimension,
                             "normalize": True}))
        body: dict[str, Any] = json.loads(response["body"].read())
        return body["embedding"]

    async def _one(self, text: str) -> list[float]:
        async with self._slots:
            try:
                return await self._bedrock.run_blocking(self._invoke, text)
            except Exception as exc:  # noqa: BLE001
                raise classify_bedrock(exc) from None

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        vectors = await asyncio.gather(*(self._one(text) for text in texts))
        return _matrix(vectors, self.dimension)


__all__ = ["GeminiEmbedder", "OpenAIEmbedder", "TitanEmbedder"]
