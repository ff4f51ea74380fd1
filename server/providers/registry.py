"""Build the configured provider adapters (one per configured provider name), by ``kind``.

Adding a vendor is one builder function and one line in ``BUILDERS``. Vendor SDKs are
imported only when a provider of that kind is configured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor

from server.config import GatewayConfig, ProviderConfig
from server.providers.base import Provider

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
                          max_connections=cfg.max_connections)


def _anthropic(name: str, cfg: ProviderConfig, key: str | None, executor: Executor) -> Provider:
    from server.providers.anthropic import AnthropicProvider

    return AnthropicProvider(name, base_url=cfg.base_url, api_key=key, timeout_s=cfg.timeout_s,
                             max_connections=cfg.max_connections,
                             default_max_tokens=cfg.default_max_output_tokens)


def _gemini(name: str, cfg: ProviderConfig, key: str | None, executor: Executor) -> Provider:
    from server.providers.gemini import GeminiProvider

    return GeminiProvider(name, base_url=cfg.base_url, api_key=key, timeout_s=cfg.timeout_s)


# Signs simulator calls when no AWS credentials are configured (the simulator accepts any).
SIMULATOR_AWS_CREDENTIALS = ("simulator", "simulator")


def _bedrock(name: str, cfg: ProviderConfig, key: str | None, executor: Executor) -> Provider:
    from server.providers.bedrock import BedrockProvider

    return BedrockProvider(
        name, default_region=cfg.region, endpoint_url=cfg.endpoint_url or cfg.base_url,
        timeout_s=cfg.timeout_s, executor=executor, max_connections=cfg.max_connections,
        # requires_api_key: false marks a local endpoint; real Bedrock uses the AWS chain.
        credentials=None if cfg.requires_api_key else SIMULATOR_AWS_CREDENTIALS)


BUILDERS: dict[str, Callable[[str, ProviderConfig, str | None, Executor], Provider]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "gemini": _gemini,
    "bedrock": _bedrock,
}


def build_providers(config: GatewayConfig, environ: Mapping[str, str],
                    executor: Executor | None = None) -> dict[str, Provider]:
    """Every configured provider's adapter. ``executor`` runs blocking SDK calls (boto3);
    the caller owns it and shuts it down after closing the providers."""
    providers: dict[str, Provider] = {}
    for name, cfg in config.providers.items():
        builder = BUILDERS.get(cfg.kind)
        if builder is None:
            raise ValueError(f"providers.{name}.kind: {cfg.kind!r} adapters are not built yet")
        if cfg.kind == "bedrock" and executor is None:
            raise ValueError(f"providers.{name}: bedrock needs a thread pool executor")
        key = None if cfg.kind == "bedrock" else _api_key(name, cfg, config, environ)
        providers[name] = builder(name, cfg, key, executor)  # type: ignore[arg-type]
    return providers
