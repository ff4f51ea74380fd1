"""Build the configured provider adapters (one per configured provider name)."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from server.config import GatewayConfig
from server.providers.base import Provider
from server.providers.openai import OpenAIProvider

log = logging.getLogger(__name__)


def build_providers(config: GatewayConfig, environ: Mapping[str, str]) -> dict[str, Provider]:
    providers: dict[str, Provider] = {}
    for name, cfg in config.providers.items():
        key = config.provider_api_key(name, environ)
        if cfg.kind == "openai":
            api_key = key.get_secret_value() if key else None
            if api_key is None and not cfg.requires_api_key:
                api_key = "not-needed"
            elif api_key is None:
                log.warning("provider %s has no API key (%s); its targets will fail over",
                            name, cfg.api_key_env or cfg.api_key_file)
            providers[name] = OpenAIProvider(
                name, base_url=cfg.base_url, api_key=api_key,
                timeout_s=cfg.timeout_s, max_connections=cfg.max_connections)
        else:
            raise ValueError(f"providers.{name}.kind: {cfg.kind!r} adapters are not built yet")
    return providers
