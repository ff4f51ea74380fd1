"""The Embed use case: texts → vectors through the router, metered like Generate.

An Embed route is a chain of embedders (``embedding_routes`` in the config; every
configured embedder and the local model are also routes of their own name). The router
tries them in order with the same retries, breakers, deadline split and attempt record as
Generate, so an embedding vendor's outage fails over like a chat vendor's. Billing is the
same meter as Generate's: a hold for the worst case (the inputs' token bound, no output)
at every target's price, settled at the price of the embedder that served.

Usage: embedding APIs do not all report tokens (Gemini's embedContent does not), so the
input tokens are counted with the gateway's one estimation policy
(``server/kernel/tokens.py``), the same for every vendor: the same texts cost the same
wherever they were embedded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from server.billing.metering import BillingRequest, Charged
from server.kernel.config import GatewayConfig, LOCAL_EMBEDDER
from server.kernel.errors import Fault, FieldViolation, GatewayError, bad_field
from server.kernel.tokens import estimate_tokens
from server.fallback.attempts import Attempt
from server.fallback.chain import Target
from server.fallback.router import Router
from server.generation.call import Caller, GenerationCall
from server.generation.metering import Metering
from server.generation.presets import Prepared
from server.providers.base import ChatMessage, GenerationParams, ProviderRequest, Usage
from server.rag.embedders import EmbedderSet, LocalMiniLMEmbedder

# numpy (~11 MB resident with its BLAS) is imported by the calls that use it, not at
# start-up: a gateway that serves no embedding or retrieval never loads it.
if TYPE_CHECKING:
    import numpy as np

MAX_INPUTS = 256
MAX_INPUT_CHARS = 32 * 1024
MAX_METADATA = 32
LOCAL_PROVIDER = "local"  # the target name of the in-process model


@dataclass(frozen=True)
class EmbedCall:
    """One Embed request, validated."""

    model: str
    inputs: tuple[str, ...]
    dimensions: int | None = None
    billing: BillingRequest | None = None
    end_user_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    caller: Caller = Caller()

    def violations(self) -> list[FieldViolation]:
        bad: list[FieldViolation] = []
        if not self.model:
            bad.append(FieldViolation("model", "required"))
        if not self.inputs:
            bad.append(FieldViolation("inputs", "at least one input is required"))
        if len(self.inputs) > MAX_INPUTS:
            bad.append(FieldViolation("inputs", f"{len(self.inputs)} inputs; at most "
                                      f"{MAX_INPUTS} are accepted"))
        for i, text in enumerate(self.inputs[:MAX_INPUTS]):
            if not text.strip():
                bad.append(FieldViolation(f"inputs[{i}]", "must not be empty"))
            elif len(text) > MAX_INPUT_CHARS:
                bad.append(FieldViolation(f"inputs[{i}]", f"at most {MAX_INPUT_CHARS} "
                                          "characters"))
        if self.dimensions is not None and self.dimensions <= 0:
            bad.append(FieldViolation("dimensions", "must be positive when set"))
        if len(self.metadata) > MAX_METADATA:
            bad.append(FieldViolation("metadata", f"at most {MAX_METADATA} entries"))
        if len(self.end_user_id) > 256:
            bad.append(FieldViolation("end_user_id", "at most 256 characters"))
        if self.billing is not None:
            bad += self.billing.violations("billing.")
        return bad


@dataclass(frozen=True)
class Embedded:
    vectors: np.ndarray  # float32 (len(inputs), dimension)
    usage: Usage
    served_by: Target
    attempts: list[Attempt]
    charge: Charged | None


def _target(name: str, config: GatewayConfig) -> Target:
    """The router's target for an embedder: its provider and vendor model."""
    if name == LOCAL_EMBEDDER:
        return Target(LOCAL_PROVIDER, name.split("/", 1)[1])
    cfg = config.rag.embedders[name]
    return Target(cfg.provider, cfg.model)


def _dimension(name: str, config: GatewayConfig) -> int:
    """An embedder's vector size, from the configuration: building the embedder to ask
    would import its vendor SDK (or load the local model) at start-up."""
    if name == LOCAL_EMBEDDER:
        return LocalMiniLMEmbedder.dimension
    return config.rag.embedders[name].dimension


def embedding_routes(config: GatewayConfig) -> dict[str, tuple[str, ...]]:
    """Every Embed route: name → embedder names in order."""
    routes = {name: (name,) for name in (LOCAL_EMBEDDER, *config.rag.embedders)}
    routes.update({name: tuple(r.embedders) for name, r in config.embedding_routes.items()})
    return routes


class EmbeddingService:
    def __init__(self, config: GatewayConfig, embedders: EmbedderSet, router: Router,
                 metering: Metering) -> None:
        self._routes = embedding_routes(config)
        self._targets = {name: _target(name, config)
                         for names in self._routes.values() for name in names}
        self._embedders = embedders
        self._router = router
        self._metering = metering
        self._dimension: dict[str, int] = {}
        for route, names in self._routes.items():
            dimensions = {_dimension(n, config) for n in names}
            if len(dimensions) != 1:
                raise ValueError(f"embedding_routes.{route}: its embedders make vectors of "
                                 f"different sizes ({sorted(dimensions)})")
            self._dimension[route] = dimensions.pop()

    @property
    def routes(self) -> dict[str, tuple[Target, ...]]:
        """Route name → its targets (for ListModels)."""
        return {name: tuple(self._targets[e] for e in names)
                for name, names in self._routes.items()}

    def dimension(self, route: str) -> int:
        return self._dimension[route]

    def _chain(self, call: EmbedCall) -> tuple[tuple[str, ...], int]:
        names = self._routes.get(call.model)
        if names is None:
            raise GatewayError(Fault.INVALID_INPUT, "UNKNOWN_MODEL",
                               f"no embedding route {call.model[:64]!r}; ListModels lists "
                               "the routes with capability \"embeddings\"",
                               violations=[FieldViolation("model", "not an embedding route")],
                               metadata={"model": call.model[:64]})
        dimension = self._dimension[call.model]
        if call.dimensions is not None and call.dimensions != dimension:
            raise bad_field("dimensions", f"route {call.model!r} makes {dimension}-dimension "
                            "vectors")
        return names, dimension

    async def embed(self, call: EmbedCall, deadline: float) -> Embedded:
        names, _ = self._chain(call)
        by_target = {self._targets[n]: n for n in names}
        chain = list(by_target)
        usage = Usage(input_tokens=sum(estimate_tokens(text) for text in call.inputs))
        metered = GenerationCall(method="Embed", model=call.model, billing=call.billing,
                                 end_user_id=call.end_user_id, metadata=call.metadata,
                                 caller=call.caller)
        prepared = Prepared(call.model, tuple(chain), "", ProviderRequest(
            model=call.model, messages=tuple(ChatMessage("user", t) for t in call.inputs),
            params=GenerationParams(max_output_tokens=0)))

        async def attempt(target: Target, seconds: float) -> tuple[np.ndarray, Usage]:
            vectors = await self._embedders.get(by_target[target]).embed(call.inputs)
            return vectors, usage

        async with self._metering.meter(metered, prepared, chain, deadline) as meter:
            vectors, served_by, attempts = await self._router.call(
                chain, attempt, deadline, span="provider.embed")
            charge = await meter.settle(usage, served_by, attempts)
        return Embedded(vectors, usage, served_by, attempts, charge)


__all__ = ["EmbedCall", "Embedded", "EmbeddingService", "embedding_routes"]
