"""Build the configured provider adapters (one per configured provider name), by ``kind``,
and the embedders of ``rag.embedders`` on top of them.

Adding a vendor is one builder function and one line in ``BUILDERS`` (and, with an
embeddings API, in ``EMBEDDER_BUILDERS``). Vendor SDKs are imported only when a provider
of that kind is configured.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial

from server.kernel.config import EmbedderConfig, GatewayConfig, ProviderConfig
from server.providers.base import Provider
from server.providers.lazy import LazyProvider, loaded
from server.rag.embedders import Embedder, EmbedderSet, embedder_set

log = logging.getLogger(__name__)


def _api_key(name: str, cfg: ProviderConfig, config: GatewayConfig,
             environ: Mapping[str, str]) -> str | None:
    key = config.provider_api_key(name, environ)
    if key is not None:
        return key.get_secret_value()
    if not cfg.requires_api_key:
        return "not-needed"
    log.warning("provider %s has no API key (%s); its targets will fail over",
                name, cfg.api_key_env or cfg.api_key_file)
    return None


def _openai(name: str, cfg: ProviderConfig, key: str | None, executor: Executor) -> Provider:
    from server.providers.openai import OpenAIProvider

    return OpenAIProvider(name, base_url=cfg.base_url, api_key=key, timeout_s=cfg.timeout_s,
                          max_connections=cfg.max_connections, transport=cfg.transport,
                          stream_batch_s=cfg.stream_batch_ms / 1000)


def _anthropic(name: str, cfg: ProviderConfig, key: str | None, executor: Executor) -> Provider:
    from server.providers.anthropic import AnthropicProvider

    return AnthropicProvider(name, base_url=cfg.base_url, api_key=key, timeout_s=cfg.timeout_s,
                             max_connections=cfg.max_connections,
                             default_max_tokens=cfg.default_max_output_tokens)


def _gemini(name: str, cfg: ProviderConfig, key: str | None, executor: Executor) -> Provider:
    from server.providers.gemini import GeminiProvider

    return GeminiProvider(name, base_url=cfg.base_url, api_key=key, timeout_s=cfg.timeout_s,
                          max_connections=cfg.max_connections)


# Signs simulator calls when no AWS credentials are configured (the simulator accepts any).
SIMULATOR_AWS_CREDENTIALS = ("simulator", "simulator")


def configured_regions(name: str, config: GatewayConfig) -> frozenset[str]:
    """The regions the provider ``name`` may be called in: its default and failover
    regions and every region a configured route (or the universal fallback) names for it.
    A regional adapter refuses any other, so callers cannot grow its per-region clients."""
    cfg = config.providers[name]
    targets = [t for model in config.models.values() for t in model.targets]
    if config.universal_fallback is not None:
        targets.append(config.universal_fallback)
    named = {t.region for t in targets if t.provider == name}
    return frozenset(r for r in {cfg.region, *cfg.failover_regions, *named} if r)


def _bedrock(name: str, cfg: ProviderConfig, key: str | None, executor: Executor,
             regions: frozenset[str] = frozenset()) -> Provider:
    from server.providers.bedrock import BedrockProvider

    return BedrockProvider(
        name, default_region=cfg.region, endpoint_url=cfg.endpoint_url or cfg.base_url,
        timeout_s=cfg.timeout_s, executor=executor, max_connections=cfg.max_connections,
        # requires_api_key: false marks a local endpoint; real Bedrock uses the AWS chain.
        credentials=None if cfg.requires_api_key else SIMULATOR_AWS_CREDENTIALS,
        regions=regions)


BUILDERS: dict[str, Callable[[str, ProviderConfig, str | None, Executor], Provider]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "bedrock": _bedrock,
}


def _builder(name: str, cfg: ProviderConfig, executor: Executor | None
             ) -> Callable[[str, ProviderConfig, str | None, Executor], Provider]:
    """The kind's builder; ValueError naming the field when it cannot be built."""
    builder = BUILDERS.get(cfg.kind)
    if builder is None:
        raise ValueError(f"providers.{name}.kind: {cfg.kind!r} adapters are not built yet")
    if cfg.kind == "bedrock" and executor is None:
        raise ValueError(f"providers.{name}: bedrock needs a thread pool executor")
    return builder


def _constructor(name: str, config: GatewayConfig, environ: Mapping[str, str],
                 executor: Executor | None) -> Callable[[], Provider]:
    """What builds the provider ``name``, its configuration checked and its key read now
    (a missing key is logged once, at start-up)."""
    cfg = config.providers[name]
    builder = _builder(name, cfg, executor)
    if cfg.kind == "bedrock":
        return partial(_bedrock, name, cfg, None, executor,  # type: ignore[arg-type]
                       configured_regions(name, config))
    return partial(builder, name, cfg, _api_key(name, cfg, config, environ),
                   executor)  # type: ignore[arg-type]


def build_provider(name: str, config: GatewayConfig, environ: Mapping[str, str],
                   executor: Executor | None = None) -> Provider:
    """The adapter of the provider configured as ``name``, built now."""
    return _constructor(name, config, environ, executor)()


# The module each kind's adapter (and so its vendor SDK) lives in.
ADAPTER_MODULES = {kind: f"server.providers.{kind}" for kind in BUILDERS}


def build_providers(config: GatewayConfig, environ: Mapping[str, str],
                    executor: Executor | None = None) -> dict[str, Provider]:
    """Every configured provider, its adapter built (and its SDK imported) on first use
    (``LazyProvider``). ``executor`` runs blocking SDK calls (boto3); the caller owns it
    and shuts it down after closing the providers. Configuration errors still surface
    here, at start-up."""
    return {name: LazyProvider(name, ADAPTER_MODULES[cfg.kind],
                               _constructor(name, config, environ, executor))
            for name, cfg in config.providers.items()}


# --- embedders ---------------------------------------------------------------------------
# Each takes the provider adapter of its kind: the embedder calls through that adapter's
# client (key, endpoint, region, pool), so closing the providers closes the embedders too.

def _openai_embedder(provider: Provider, name: str, cfg: EmbedderConfig) -> Embedder:
    from server.providers.openai import OpenAIEmbedder, OpenAIProvider

    provider = loaded(provider)
    assert isinstance(provider, OpenAIProvider)
    return OpenAIEmbedder(provider, model=cfg.model, dimension=cfg.dimension, name=name)


def _gemini_embedder(provider: Provider, name: str, cfg: EmbedderConfig) -> Embedder:
    from server.providers.gemini import GeminiEmbedder, GeminiProvider

    provider = loaded(provider)
    assert isinstance(provider, GeminiProvider)
    return GeminiEmbedder(provider, model=cfg.model, dimension=cfg.dimension, name=name)


def _titan_embedder(provider: Provider, name: str, cfg: EmbedderConfig) -> Embedder:
    from server.providers.bedrock import BedrockProvider, TitanEmbedder

    provider = loaded(provider)
    assert isinstance(provider, BedrockProvider)
    return TitanEmbedder(provider, model=cfg.model, dimension=cfg.dimension, name=name)


EMBEDDER_BUILDERS: dict[str, Callable[[Provider, str, EmbedderConfig], Embedder]] = {
    "openai": _openai_embedder,
    "gemini": _gemini_embedder,
    "bedrock": _titan_embedder,
}


def build_embedders(config: GatewayConfig, providers: Mapping[str, Provider]) -> EmbedderSet:
    """The embedders retrieval may use: the local model and every ``rag.embedders`` entry,
    built on ``providers`` (the adapters ``build_providers`` made) on first use.

    Raises ValueError naming the key when an entry's provider is unknown or of a kind with
    no embeddings API here (checked now, so a bad entry stops the gateway at start-up).
    """
    factories: dict[str, Callable[[], Embedder]] = {}
    for name, cfg in config.rag.embedders.items():
        where = f"rag.embedders.{name}.provider"
        provider = providers.get(cfg.provider)
        if provider is None:
            raise ValueError(f"{where}: unknown provider {cfg.provider!r}")
        kind = config.providers[cfg.provider].kind
        builder = EMBEDDER_BUILDERS.get(kind)
        if builder is None:
            raise ValueError(f"{where}: {cfg.provider!r} is of kind {kind}; embedders need "
                             f"one of kind {', '.join(EMBEDDER_BUILDERS)}")
        factories[name] = partial(builder, provider, name, cfg)
    return embedder_set(factories, config.rag.embed_batch_size, config.rag.embedder_threads)


@asynccontextmanager
async def standalone_embedders(config: GatewayConfig,
                               environ: Mapping[str, str]) -> AsyncIterator[EmbedderSet]:
    """The configured embedders for a process with no gateway (``llmgw ingest``): builds
    only the providers ``rag.embedders`` names, with their own small thread pool (Bedrock),
    and closes them on exit."""
    executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="embedder-sdk")
    providers: dict[str, Provider] = {}
    try:
        for cfg in config.rag.embedders.values():
            if cfg.provider in config.providers and cfg.provider not in providers:
                providers[cfg.provider] = build_provider(cfg.provider, config, environ, executor)
        yield build_embedders(config, providers)
    finally:
        for provider in providers.values():
            await provider.aclose()
        executor.shutdown(wait=False, cancel_futures=True)
