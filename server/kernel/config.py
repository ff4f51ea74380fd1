"""Gateway configuration: one YAML file plus environment overrides, validated at start-up.

Why pydantic with ``extra="forbid"``: a typo in a key (``max_retires``) must stop the server
with an error naming the key, not be silently ignored. Environment overrides follow
12-factor practice: ``LLMGW_<SECTION>__<KEY>=value`` (double underscore between levels;
the value is parsed as YAML, so ``true``, ``5`` and ``[a, b]`` work) and the conventional
``DATABASE_URL`` / ``REDIS_URL``. Secrets (API keys, JWT secrets) are never stored in the
file: the file names an environment variable or a file that holds them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    model_validator,
)

DEFAULT_CONFIG = Path(__file__).parents[1] / "defaults" / "gateway.yaml"
ENV_PREFIX = "LLMGW_"


class ConfigError(Exception):
    """The configuration is invalid; the message names every bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsConfig(_Strict):
    """TLS on the gRPC listener (``server.tls``; absent: plaintext, the local default).

    The files are checked here, at load, so a typo or a key of another certificate stops
    the start with the key to fix rather than failing the first handshake."""

    cert_file: Path = Field(description="PEM certificate chain, the server's own first")
    key_file: Path = Field(description="PEM private key of that certificate, unencrypted")
    client_ca_file: Path | None = Field(
        None, description="PEM CA bundle; set → mutual TLS: every client must present a "
        "certificate signed by it, others are refused at the handshake")
    reload: bool = Field(True, description="re-read the files when they change (checked "
                         "before each new connection); SIGHUP re-reads them either way")

    @model_validator(mode="after")
    def _usable(self) -> TlsConfig:
        from server.kernel.tls import TlsFiles, TlsMaterialError, load_material

        files = TlsFiles(self.cert_file, self.key_file, self.client_ca_file)
        if unreadable := files.unreadable():
            raise ValueError("; ".join(str(exc) for exc in unreadable))
        try:
            load_material(files)
        except TlsMaterialError as exc:
            raise ValueError(str(exc)) from None
        return self


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(50051, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9464, ge=0, le=65535)
    grace_period_s: float = Field(20.0, ge=0, description="time in-flight calls get on SIGTERM")
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_concurrent_streams: int = Field(1000, ge=1)
    max_streams_per_caller: int = Field(
        256, ge=1, description="server-streaming calls one caller (JWT subject) may hold open "
        "at once; more are refused RESOURCE_EXHAUSTED, reason RATE_LIMITED")
    keepalive_time_s: float = Field(30.0, gt=0)
    keepalive_timeout_s: float = Field(10.0, gt=0)
    default_timeout_s: float = Field(60.0, gt=0, description="deadline when the caller sets none")
    tls: TlsConfig | None = Field(None, description="unset: plaintext (local use only)")


class DatabaseConfig(_Strict):
    url: str | None = Field(None, description="postgresql://…; unset → embedded pgserver")
    pool_size: int = Field(10, ge=1)
    migrate_on_start: bool = True
    health_interval_s: float = Field(5.0, gt=0)


class AuthConfig(_Strict):
    enabled: bool = True
    issuer: str = "llm-gateway-dev"
    audience: str = "llm-gateway"
    hs256_secret_env: str | None = "LLMGW_JWT_SECRET"
    hs256_secret_file: Path | None = None
    public_key_files: list[Path] = []
    jwks_file: Path | None = None
    jwks_url: str | None = Field(
        None, pattern=r"^https?://[^\s/]+\S*$", description="JWKS endpoint of the identity "
        "provider (https://…/jwks.json): fetched at start, every jwks_refresh_s, and when a "
        "token names an unknown kid; alongside the static keys above")
    jwks_refresh_s: float = Field(300.0, gt=0, description="background refresh interval")
    jwks_min_refresh_s: float = Field(
        30.0, ge=0, description="at most one on-demand fetch (unknown kid) per this many "
        "seconds since the last fetch")
    jwks_timeout_s: float = Field(5.0, gt=0, le=60, description="one fetch, connect to last "
                                  "byte (also bounds how long start-up waits for it)")
    leeway_s: float = Field(30.0, ge=0)
    dev_secret: bool = Field(True, description="generate a development secret in data_dir")


class TenancyConfig(_Strict):
    """Which JWT claim names the caller's tenant (server/kernel/tenancy.py); tokens
    without it act in the default tenant, so single-tenant deployments need nothing."""

    claim: str = Field("tenant", min_length=1, description="e.g. tenant or org_id")
    tier_claim: str = Field("tier", min_length=1, description="the caller's limit set")
    tiers: dict[str, str] = Field({}, description="tenant → tier, for tokens without the "
                                  "tier claim")
    default_tier: str = "default"


class LimitRule(_Strict):
    name: str
    per: Literal["service", "end_user"]
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    burst: int | None = Field(None, ge=1)
    scope: str | None = Field(None, description="only RPCs needing this scope")
    model: str | None = Field(None, description="only requests for this model")
    tenant: str | None = Field(None, description="only callers of this tenant")
    tier: str | None = Field(None, description="only callers of this tier (tenancy)")

    @model_validator(mode="after")
    def _has_a_limit(self) -> LimitRule:
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            raise ValueError("set requests_per_minute and/or tokens_per_minute")
        return self


class RateLimitConfig(_Strict):
    enabled: bool = True
    redis_url: str | None = None
    fail_open: bool = True
    redis_timeout_s: float = Field(0.25, gt=0)
    rules: list[LimitRule] = []


class TracingConfig(_Strict):
    service_name: str = "llm-gateway"
    otlp_endpoint: str | None = None


class LoggingConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_format: bool = True


class ProviderConfig(_Strict):
    kind: Literal["openai", "anthropic", "gemini", "bedrock"]
    base_url: str | None = None
    api_key_env: str | None = None
    api_key_file: Path | None = None
    requires_api_key: bool = Field(True, description="false for local endpoints (simulator)")
    timeout_s: float = Field(60.0, gt=0, description="longest one attempt may take (unary: the "
                             "whole call; streams: until the first token)")
    max_connections: int = Field(
        1000, ge=1, description="HTTP connections to this provider per process. A stream holds "
        "its connection for its whole length (often tens of seconds), so the cap must cover the "
        "concurrent streams one process serves; a call that finds no free connection within its "
        "attempt's time fails as pool_exhausted and falls back. Bedrock: botocore's pool per "
        "region client")
    region: str = Field("", description="default region (bedrock: the AWS region)")
    failover_regions: list[str] = Field(
        [], description="regions tried after the preferred one; each is its own target")
    endpoint_url: str | None = Field(
        None, description="bedrock endpoint override; '{region}' is replaced (simulator)")
    default_max_output_tokens: int = Field(
        4096, ge=1, description="max_tokens when the caller sets none (Anthropic requires it)")
    transport: Literal["sdk", "direct"] = Field(
        "direct", description="kind openai only: 'direct' speaks Chat Completions over the "
        "gateway's own HTTP session (less CPU per call; a stream's tokens that arrive in one "
        "network read leave as one message); 'sdk' goes through the official openai SDK")
    stream_batch_ms: float = Field(
        20.0, ge=0, le=100, description="kind openai, transport direct: once a stream's "
        "tokens trickle in (text in two reads >= 1 ms apart), read the vendor at most once per "
        "this many ms, so tokens arriving in between leave as one message (less CPU per token; "
        "no token waits longer than this; the first token and a burst never wait; a "
        "trickling stream's end can come this much later). 0: every read passed on at once")

    @model_validator(mode="after")
    def _transport_for_openai(self) -> ProviderConfig:
        if "transport" in self.model_fields_set and self.kind != "openai":
            raise ValueError("transport is for kind openai only (the other vendors go "
                             "through their SDKs)")
        if "stream_batch_ms" in self.model_fields_set and self.stream_batch_ms and (
                self.kind != "openai" or self.transport != "direct"):
            raise ValueError("stream_batch_ms is for kind openai with transport direct")
        return self


class TargetConfig(_Strict):
    provider: str
    model: str
    region: str = ""
    pin_region: bool = Field(False, description="true: never expand into failover regions")
    weight: int = Field(1, ge=0, description="share of traffic in a weighted route")


class PricingConfig(_Strict):
    """Prices in micro-units of the currency per million tokens (never floats). An empty
    entry (``{}``) is an explicit price of zero: a free model is said, never assumed."""

    currency_code: str = "USD"
    input_per_million_micros: int = Field(0, ge=0)
    output_per_million_micros: int = Field(0, ge=0)
    cached_input_per_million_micros: int | None = Field(
        None, ge=0, description="cache reads; unset: the input rate")
    cache_write_input_per_million_micros: int | None = Field(
        None, ge=0, description="cache writes (Anthropic, Bedrock); unset: the input rate")
    per_message_micros: int = Field(0, ge=0, description="flat price per call")
    per_minute_micros: int = Field(0, ge=0, description="price per minute of call time")
    max_output_tokens: int | None = Field(
        None, ge=1, description="the most the model writes in one answer: what a billed "
                                "call's hold covers when the caller sets no max_output_tokens "
                                "(unset: billing.hold_output_tokens)")


class ModelConfig(_Strict):
    description: str = ""
    targets: list[TargetConfig] = Field(min_length=1)
    pricing: PricingConfig | None = None
    strategy: Literal["ordered", "weighted"] = Field(
        "ordered", description="weighted: targets are equivalent; the first is drawn by weight")
    fallbacks: list[str] = Field(
        [], description="other model names whose chains follow (same provider first)")


class RetryConfig(_Strict):
    max_attempts_per_target: int = Field(2, ge=1, le=10)
    base_delay_s: float = Field(0.05, ge=0)
    max_delay_s: float = Field(2.0, ge=0)
    max_retry_after_s: float = Field(5.0, ge=0, description="longer retry-after → next target")


class RoutingConfig(_Strict):
    """Circuit breakers, the global retry allowance and the database routes cache."""

    breaker_consecutive_failures: int = Field(5, ge=1)
    breaker_error_rate: float = Field(0.5, gt=0, le=1)
    breaker_window_s: float = Field(30.0, gt=0)
    breaker_min_calls: int = Field(20, ge=1, description="calls in the window before the rate counts")
    breaker_cooldown_s: float = Field(10.0, gt=0, description="open time before a probe")
    retry_ratio: float = Field(0.2, ge=0, description="retries earned per request",
                               validation_alias=AliasChoices("retry_ratio", "retry_budget_ratio"))
    retry_min_per_s: float = Field(10.0, ge=0, description="retries always allowed per second",
                                   validation_alias=AliasChoices("retry_min_per_s",
                                                                 "retry_budget_min_per_s"))
    routes_refresh_s: float = Field(5.0, gt=0, description="database routes cache refresh period")
    bedrock_threads: int = Field(32, ge=1, description="thread pool for the blocking boto3 calls")


class BillingConfig(_Strict):
    """The wallet ledger (server/billing): batching writers, holds and their sweeper."""

    enabled: bool = True
    pool_size: int = Field(8, ge=1, description="ledger connections per process")
    writers: int = Field(2, ge=1, description="concurrent ledger batches per process")
    max_batch: int = Field(256, ge=1, description="operations per ledger statement")
    hold_ttl_s: float = Field(
        60.0, gt=0, description="how long a call's hold outlives its deadline before the "
                                "sweeper releases it (a crashed call's reservation)")
    sweep_interval_s: float = Field(5.0, gt=0, description="how often expired holds are swept")
    hold_output_tokens: int = Field(
        4096, ge=1, description="output tokens held for when the caller sets no max_output_tokens")


# The offline embedder every gateway has (server/rag/embedders.py), needing no provider.
LOCAL_EMBEDDER = "local/all-MiniLM-L6-v2"


class EmbedderConfig(_Strict):
    """A vendor embedding model, called through a configured provider: the provider's kind
    picks the API (openai, gemini or bedrock Titan) and its base URL, key, region, timeout
    and connections are reused, so an embedder needs no secrets of its own."""

    provider: str = Field(description="a name under providers: of kind openai, gemini or bedrock")
    model: str = Field(min_length=1, description="the vendor's model id, e.g. text-embedding-3-small")
    dimension: int = Field(ge=1, le=2000, description="vector size asked of the model (pgvector's "
                           "HNSW index takes at most 2000)")


class EmbeddingRouteConfig(_Strict):
    """An Embed route: embedders tried in order (all of one dimension)."""

    description: str = ""
    embedders: list[str] = Field(min_length=1, description="names under rag.embedders, or "
                                 "the local model")


class HybridConfig(_Strict):
    """Hybrid search's blend (server/rag/retrieve.py): the vector side's weight falls from
    ``vector_when_lexical_weak`` to ``vector_when_lexical_strong`` as the best normalised
    BM25 score rises from ``lexical_weak`` to ``lexical_strong``."""

    vector_when_lexical_weak: float = Field(0.5, ge=0, le=1)
    vector_when_lexical_strong: float = Field(0.0, ge=0, le=1)
    lexical_weak: float = Field(0.3, ge=0, le=1)
    lexical_strong: float = Field(0.6, ge=0, le=1)


class RagConfig(_Strict):
    """Retrieval: the embedder, chunking defaults and search bounds (server/rag)."""

    embedder: str = Field(LOCAL_EMBEDDER, description="default for new namespaces: the local "
                          "model or a name under embedders")
    embedders: dict[str, EmbedderConfig] = Field(
        {}, description="vendor embedders by name, e.g. openai/text-embedding-3-small; the name "
        "is stored with every chunk, so a name must keep its model and dimension (a new model "
        "is a new name)")
    embed_batch_size: int = Field(32, ge=1, le=512)
    embedder_threads: int = Field(1, ge=1, description="BLAS threads of the local embedder")
    chunk_size: int = Field(1000, ge=100, le=8000)
    chunk_overlap: int = Field(150, ge=0)
    default_top_k: int = Field(5, ge=1)
    max_top_k: int = Field(100, ge=1)
    ef_search_default: int = Field(
        64, ge=1, le=1000, description="HNSW candidate list per query: recall@10 >= 0.98 "
        "unfiltered at 100k chunks (bench/rag_speed.py), ~1 ms faster than 100")
    ef_search_min: int = Field(10, ge=1)
    ef_search_max: int = Field(1000, ge=1, le=1000)
    hnsw_m: int = Field(16, ge=2, le=100)
    hnsw_ef_construction: int = Field(64, ge=4, le=1000)
    filter_overfetch: int = Field(40, ge=1, description="ef_search = top_k × this when filtered")
    max_documents_per_call: int = Field(256, ge=1)
    max_document_bytes: int = Field(2 * 1024 * 1024, ge=1024)
    default_context_tokens: int = Field(
        2000, ge=100, description="grounded Generate: tokens of retrieved context by default",
        validation_alias=AliasChoices("default_context_tokens", "context_token_budget"))
    max_context_tokens: int = Field(16000, ge=100)
    hybrid: HybridConfig = HybridConfig()
    query_cache_size: int = Field(
        4096, ge=0, description="query embeddings kept per process (LRU; 0 turns it off): a "
        "repeated question skips the embedder")

    @model_validator(mode="after")
    def _consistent(self) -> RagConfig:
        if LOCAL_EMBEDDER in self.embedders:
            raise ValueError(f"embedders: {LOCAL_EMBEDDER!r} is the local model's name")
        if self.embedder != LOCAL_EMBEDDER and self.embedder not in self.embedders:
            raise ValueError(f"embedder: {self.embedder!r} is neither {LOCAL_EMBEDDER!r} nor a "
                             f"name under embedders")
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError("chunk_overlap must be smaller than chunk_size")
        if not self.ef_search_min <= self.ef_search_default <= self.ef_search_max:
            raise ValueError("need ef_search_min <= ef_search_default <= ef_search_max")
        if self.default_top_k > self.max_top_k:
            raise ValueError("default_top_k must not exceed max_top_k")
        return self


class PromptsConfig(_Strict):
    timezone: str = Field("UTC", description="zone of {{current_date}} and friends")
    load_defaults: bool = Field(True, description="load server/defaults/prompts at start-up")

    @model_validator(mode="after")
    def _known_zone(self) -> PromptsConfig:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        return self


class GatewayConfig(_Strict):
    data_dir: Path = Path(".data")
    server: ServerConfig = ServerConfig()
    database: DatabaseConfig = DatabaseConfig()
    auth: AuthConfig = AuthConfig()
    rate_limits: RateLimitConfig = RateLimitConfig()
    tracing: TracingConfig = TracingConfig()
    logging: LoggingConfig = LoggingConfig()
    retry: RetryConfig = RetryConfig()
    rag: RagConfig = RagConfig()
    routing: RoutingConfig = RoutingConfig()
    billing: BillingConfig = BillingConfig()
    providers: dict[str, ProviderConfig] = {}
    models: dict[str, ModelConfig] = {}
    universal_fallback: TargetConfig | None = None
    prices: dict[str, dict[str, PricingConfig]] = Field(
        {}, description="provider → model → price: what a call costs is the price of the "
                        "target that served it; a route's own `pricing` prices its targets "
                        "not listed here")
    capabilities: dict[str, dict[str, list[Literal["tools", "json", "images"]]]] = Field(
        {}, description="provider → model → what it can do beyond text (tools, json, "
                        "images); a listed model is skipped for requests needing what it "
                        "lacks; an unlisted model is assumed to do everything")
    embedding_routes: dict[str, EmbeddingRouteConfig] = Field(
        {}, description="Embed routes: name → embedders tried in order (names under "
                        "rag.embedders, or the local model); every rag.embedders entry and "
                        "the local model are also routes of their own name")
    prompts: PromptsConfig = PromptsConfig()
    tenancy: TenancyConfig = TenancyConfig()

    @model_validator(mode="after")
    def _targets_name_known_providers(self) -> GatewayConfig:
        bad = [
            f"models.{name}.targets[{i}].provider: unknown provider {t.provider!r}"
            for name, model in self.models.items()
            for i, t in enumerate(model.targets)
            if t.provider not in self.providers
        ]
        bad += [f"models.{name}.fallbacks[{i}]: unknown model {other!r}"
                for name, model in self.models.items()
                for i, other in enumerate(model.fallbacks) if other not in self.models]
        if self.universal_fallback and self.universal_fallback.provider not in self.providers:
            bad.append(f"universal_fallback.provider: unknown provider "
                       f"{self.universal_fallback.provider!r}")
        bad += [f"prices.{provider}: unknown provider {provider!r}"
                for provider in self.prices
                if provider not in self.providers and provider != "local"]
        bad += [f"capabilities.{provider}: unknown provider {provider!r}"
                for provider in self.capabilities if provider not in self.providers]
        embedders = {LOCAL_EMBEDDER, *self.rag.embedders}
        bad += [f"embedding_routes.{name}.embedders[{i}]: unknown embedder {e!r}"
                for name, route in self.embedding_routes.items()
                for i, e in enumerate(route.embedders) if e not in embedders]
        bad += self._conflicting_route_prices()
        if bad:
            raise ValueError("; ".join(bad))
        return self

    def _conflicting_route_prices(self) -> list[str]:
        """Two routes may not give one target different prices (which would apply after a
        fallback?) unless ``prices`` settles it."""
        seen: dict[tuple[str, str], tuple[str, PricingConfig]] = {}
        bad = []
        for name, model in self.models.items():
            if model.pricing is None:
                continue
            for t in model.targets:
                if t.model in self.prices.get(t.provider, {}):
                    continue
                first = seen.setdefault((t.provider, t.model), (name, model.pricing))
                if first[1] != model.pricing:
                    bad.append(f"models.{name}.pricing: prices {t.provider}/{t.model} unlike "
                               f"models.{first[0]}.pricing; set prices.{t.provider}.{t.model}")
        return bad

    def provider_api_key(self, name: str, environ: Mapping[str, str] = os.environ) -> SecretStr | None:
        """Resolve a provider's key from its env var or file, at the moment it is needed."""
        provider = self.providers[name]
        if provider.api_key_env and environ.get(provider.api_key_env):
            return SecretStr(environ[provider.api_key_env])
        if provider.api_key_file:
            return SecretStr(provider.api_key_file.read_text().strip())
        return None


_TOP_LEVEL_SCALARS = frozenset({"data_dir"})


def _deep_set(tree: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        node = tree.get(key)
        if not isinstance(node, dict):
            node = tree[key] = {}
        tree = node
    tree[path[-1]] = value


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """Apply ``LLMGW_A__B=v`` and the conventional DATABASE_URL / REDIS_URL variables."""
    tree = dict(raw)
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        # LLMGW_DATA_DIR sets a top-level key; other LLMGW_X variables (LLMGW_JWT_SECRET,
        # LLMGW_CONFIG) are not configuration keys and are left alone.
        if len(path) == 1 and path[0] not in _TOP_LEVEL_SCALARS:
            continue
        _deep_set(tree, path, yaml.safe_load(value) if value else value)
    if environ.get("DATABASE_URL"):
        _deep_set(tree, ["database", "url"], environ["DATABASE_URL"])
    if environ.get("REDIS_URL"):
        _deep_set(tree, ["rate_limits", "redis_url"], environ["REDIS_URL"])
    return tree


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        key = ".".join(str(part) for part in item["loc"]) or "(top level)"
        got = "" if item["type"] == "missing" else f" (got {item.get('input')!r:.60})"
        lines.append(f"  {key}: {item['msg']}{got}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_config(path: Path | None = None, environ: Mapping[str, str] = os.environ) -> GatewayConfig:
    """Read the YAML file (the packaged defaults when none is given) and the environment."""
    source = path or Path(environ.get("LLMGW_CONFIG") or DEFAULT_CONFIG)
    try:
        raw = yaml.safe_load(source.read_text()) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read config file {source}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {source} is not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {source}: expected a mapping at the top level")
    try:
        return GatewayConfig.model_validate(apply_env_overrides(raw, environ))
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
