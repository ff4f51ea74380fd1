"""Vendor-neutral behaviour of the simulator: what a model does, not how a vendor says it.

Every vendor protocol module (OpenAI today; Anthropic, Gemini, Bedrock later) asks the
same questions of this module — "how should this call to model X behave?", "what text
does it produce?", "record that the client went away" — and only translates the answers
into its own wire format. Keeping the answers here means a scripted outage or token
rate means the same thing whichever SDK is pointed at the simulator.

Nothing here knows about HTTP frameworks: the vendor module passes in callables for the
few transport facts the bookkeeping needs (is the connection gone?).
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import json
import math
import random
import re
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

DEFAULT_REPLY_TOKENS = 12
WILDCARD_KEY = "*"
"""Scenario key that applies to every model without a scenario of its own."""

_LOREM_TEXT = (
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    "incididunt ut labore et dolore magna aliqua ut enim ad minim veniam quis nostrud "
    "exercitation ullamco laboris nisi ut aliquip ex ea commodo consequat"
)
_LOREM = tuple(_LOREM_TEXT.split())


CONTENT_FILTER_MODES = ("prompt", "response")


class ScenarioError(ValueError):
    """A scenario (from the control API or a file) is malformed; the message says why."""


# --------------------------------------------------------------------------- behaviour


@dataclass(frozen=True, slots=True)
class ScriptedFailure:
    """One entry of a behaviour's `failures` list: fail the next `count` calls this way.

    `code` lets a test script vendor error codes that adapters classify on
    (e.g. OpenAI's `context_length_exceeded`); the vendor module picks a sensible
    default per status when it is absent.
    """

    status: int
    count: int = 1
    retry_after_s: float | None = None
    message: str | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How one model behaves. All fields are optional in the scripted form.

    Precedence when several apply: a region outage (see `RegionOutage`), `not_found`,
    then pending one-shot `failures`, then `always_status`, then `timeout`, then a
    (possibly dropped) successful reply.

    `drop_error_status` turns a `drop_after_tokens` drop from a cut connection into the
    vendor's in-stream error for that status (Anthropic `event: error`, a Gemini error
    chunk, a Bedrock event-stream exception), which is how vendors report an upstream
    failure once the HTTP 200 is already sent. `content_filter` makes the model refuse:
    `"prompt"` blocks before any output, `"response"` stops half-way through it.
    `cached_prompt_tokens` / `cache_write_tokens` script the prompt-cache part of usage.
    """

    latency_ms: float = 0.0
    tokens_per_second: float = 0.0
    reply_tokens: int = DEFAULT_REPLY_TOKENS
    reply: str | None = None
    failures: tuple[ScriptedFailure, ...] = ()
    always_status: int | None = None
    timeout: bool = False
    drop_after_tokens: int | None = None
    drop_error_status: int | None = None
    not_found: bool = False
    content_filter: str | None = None
    cached_prompt_tokens: int = 0
    cache_write_tokens: int = 0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Behaviour:
        """Validate a scripted behaviour; unknown keys are errors so typos do not pass silently."""
        if not isinstance(data, Mapping):
            raise ScenarioError("behaviour must be a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ScenarioError(f"unknown behaviour field(s): {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        for name in ("latency_ms", "tokens_per_second"):
            if data.get(name) is not None:
                kwargs[name] = _non_negative_number(data[name], name)
        if data.get("reply_tokens") is not None:
            kwargs["reply_tokens"] = _non_negative_int(data["reply_tokens"], "reply_tokens")
        for name in ("drop_after_tokens", "cached_prompt_tokens", "cache_write_tokens"):
            if data.get(name) is not None:
                kwargs[name] = _non_negative_int(data[name], name)
        if data.get("drop_error_status") is not None:
            kwargs["drop_error_status"] = _http_status(
                data["drop_error_status"], "drop_error_status"
            )
        if data.get("content_filter") is not None:
            if data["content_filter"] not in CONTENT_FILTER_MODES:
                raise ScenarioError("content_filter must be 'prompt' or 'response'")
            kwargs["content_filter"] = data["content_filter"]
        if data.get("reply") is not None:
            if not isinstance(data["reply"], str):
                raise ScenarioError("reply must be a string")
            kwargs["reply"] = data["reply"]
        if data.get("always_status") is not None:
            kwargs["always_status"] = _http_status(data["always_status"], "always_status")
        for name in ("timeout", "not_found"):
            if data.get(name) is not None:
                if not isinstance(data[name], bool):
                    raise ScenarioError(f"{name} must be true or false")
                kwargs[name] = data[name]
        if data.get("failures") is not None:
            kwargs["failures"] = _failures(data["failures"])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The scripted form, as the control API reports it."""
        out = asdict(self)
        out["failures"] = [asdict(f) for f in self.failures]
        return out


def _non_negative_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{name} must be a number")
    if value < 0:
        raise ScenarioError(f"{name} must be >= 0")
    return float(value)


def _non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScenarioError(f"{name} must be an integer >= 0")
    return value


def _http_status(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise ScenarioError(f"{name} must be an HTTP error status (400-599)")
    return value


def _failures(value: Any) -> tuple[ScriptedFailure, ...]:
    if not isinstance(value, list):
        raise ScenarioError("failures must be a list")
    allowed = set(ScriptedFailure.__dataclass_fields__)
    out = []
    for i, item in enumerate(value):
        where = f"failures[{i}]"
        if not isinstance(item, Mapping) or "status" not in item:
            raise ScenarioError(f"{where} must be an object with a status")
        unknown = set(item) - allowed
        if unknown:
            raise ScenarioError(f"{where}: unknown field(s): {', '.join(sorted(unknown))}")
        retry = item.get("retry_after_s")
        message, code = item.get("message"), item.get("code")
        if message is not None and not isinstance(message, str):
            raise ScenarioError(f"{where}.message must be a string")
        if code is not None and not isinstance(code, str):
            raise ScenarioError(f"{where}.code must be a string")
        out.append(
            ScriptedFailure(
                status=_http_status(item["status"], f"{where}.status"),
                count=_non_negative_int(item.get("count", 1), f"{where}.count"),
                retry_after_s=None if retry is None else _non_negative_number(retry, where),
                message=message,
                code=code,
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ScenarioFile:
    """A scenario file's content: behaviours by (model, region) and region outages."""

    scenarios: dict[tuple[str, str | None], Behaviour]
    outages: dict[str, RegionOutage]

    def apply(self, book: ScenarioBook) -> None:
        for (model, region), behaviour in self.scenarios.items():
            book.set(model, behaviour, region)
        for region, outage in self.outages.items():
            book.set_region_down(region, outage)


def load_scenario_file(path: str | Path) -> ScenarioFile:
    """Read a YAML/JSON scenario file.

    Forms: a bare `{model: behaviour}`, or `{scenarios: {model: behaviour},
    region_scenarios: {region: {model: behaviour}}, regions: {region: {status, message}}}`.
    Behaviours are the control API's PUT bodies, so a scenario can be tried
    interactively and then frozen into a file unchanged; `regions` lists regions that
    start down (an outage demo).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml  # type: ignore[import-untyped,unused-ignore]  # only needed for YAML files

        data = yaml.safe_load(text) or {}
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{path}: expected a mapping of model name to behaviour")
    sectioned = {"scenarios", "region_scenarios", "regions"} & set(data)
    by_region: dict[str | None, Any] = (
        {None: data.get("scenarios") or {}, **(data.get("region_scenarios") or {})}
        if sectioned
        else {None: data}
    )
    scenarios: dict[tuple[str, str | None], Behaviour] = {}
    for region, models in by_region.items():
        if not isinstance(models, Mapping):
            raise ScenarioError(f"{path}: expected a mapping of model name to behaviour")
        for model, behaviour in models.items():
            try:
                scenarios[(str(model), region)] = Behaviour.from_mapping(behaviour or {})
            except ScenarioError as exc:
                where = f"model {model!r}" + (f" in region {region}" if region else "")
                raise ScenarioError(f"{path}: {where}: {exc}") from None
    outages = {}
    regions = (data.get("regions") or {}) if sectioned else {}
    if not isinstance(regions, Mapping):
        raise ScenarioError(f"{path}: regions must map region to {{status, message}}")
    for region, outage in regions.items():
        try:
            outages[str(region)] = RegionOutage.from_mapping(outage or {})
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: region {region!r}: {exc}") from None
    return ScenarioFile(scenarios, outages)


# --------------------------------------------------------------------------- scenario book


@dataclass(frozen=True, slots=True)
class ScriptedError:
    """The error a call must answer with; the vendor module renders it in its own shape."""

    status: int
    message: str | None = None
    retry_after_s: float | None = None
    code: str | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    """The decision for one call: its behaviour and, if it must fail, how."""

    behaviour: Behaviour
    error: ScriptedError | None = None


@dataclass(slots=True)
class _Scenario:
    behaviour: Behaviour
    remaining: list[int]  # per failure entry, how many calls it still fails


@dataclass(frozen=True, slots=True)
class RegionOutage:
    """A whole region answering every call with `status` ("region us-east-1 down")."""

    status: int = 503
    message: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RegionOutage:
        if not isinstance(data, Mapping):
            raise ScenarioError("region outage must be a JSON object")
        unknown = set(data) - {"down", "status", "message"}
        if unknown:
            raise ScenarioError(f"unknown region field(s): {', '.join(sorted(unknown))}")
        message = data.get("message")
        if message is not None and not isinstance(message, str):
            raise ScenarioError("message must be a string")
        status = data.get("status")
        return cls(503 if status is None else _http_status(status, "status"), message)


ScenarioKey = tuple[str, str | None]
"""(model, region); region None means "in every region without a scenario of its own"."""


def display_key(key: ScenarioKey) -> str:
    """How the control API names a scenario: `model`, or `model@region` when region-scoped."""
    model, region = key
    return model if region is None else f"{model}@{region}"


class ScenarioBook:
    """Scripted behaviours keyed by model and, optionally, region; plus region outages.

    Lookup for a call to `model` in `region` takes the first that exists of
    (model, region), (model, any region), (*, region), (*, any region), the default.
    Vendors without regions pass region None.

    `plan()` is synchronous and contains no await, so on the single event loop each call
    consumes exactly one pending failure even when many requests arrive at once.
    """

    def __init__(self) -> None:
        self._scenarios: dict[ScenarioKey, _Scenario] = {}
        self._outages: dict[str, RegionOutage] = {}
        self._default = Behaviour()

    def set(self, model: str, behaviour: Behaviour, region: str | None = None) -> None:
        """Replace the behaviour of `model` (in `region`) and restart its failure script."""
        remaining = [f.count for f in behaviour.failures]
        self._scenarios[(model, region)] = _Scenario(behaviour, remaining)

    def remove(self, model: str, region: str | None = None) -> bool:
        return self._scenarios.pop((model, region), None) is not None

    def clear(self) -> None:
        """Forget every scenario and outage."""
        self._scenarios.clear()
        self._outages.clear()

    def names(self) -> list[str]:
        """Models that have a scripted behaviour (including the wildcard, if set)."""
        return list(dict.fromkeys(model for model, _ in self._scenarios))

    def set_region_down(self, region: str, outage: RegionOutage) -> None:
        self._outages[region] = outage

    def set_region_up(self, region: str) -> bool:
        return self._outages.pop(region, None) is not None

    def outages(self) -> dict[str, RegionOutage]:
        return dict(self._outages)

    def _find(self, model: str, region: str | None) -> _Scenario | None:
        candidates = ((model, region), (model, None), (WILDCARD_KEY, region), (WILDCARD_KEY, None))
        for key in candidates:
            scenario = self._scenarios.get(key)
            if scenario is not None:
                return scenario
        return None

    def behaviour(self, model: str, region: str | None = None) -> Behaviour:
        """The behaviour that applies to `model` in `region`."""
        scenario = self._find(model, region)
        return self._default if scenario is None else scenario.behaviour

    def plan(self, model: str, region: str | None = None) -> Plan:
        """Decide how the next call behaves, consuming a one-shot failure if any."""
        scenario = self._find(model, region)
        behaviour = self._default if scenario is None else scenario.behaviour
        outage = None if region is None else self._outages.get(region)
        if outage is not None:
            message = outage.message or f"Region {region} is unavailable (simulated outage)."
            return Plan(behaviour, ScriptedError(outage.status, message))
        if scenario is None:
            return Plan(behaviour)
        if behaviour.not_found:
            return Plan(behaviour, ScriptedError(404))
        for i, left in enumerate(scenario.remaining):
            if left > 0:
                scenario.remaining[i] = left - 1
                f = behaviour.failures[i]
                return Plan(behaviour, ScriptedError(f.status, f.message, f.retry_after_s, f.code))
        if behaviour.always_status is not None:
            return Plan(behaviour, ScriptedError(behaviour.always_status))
        return Plan(behaviour)

    def snapshot(self) -> dict[str, Any]:
        """Behaviours (keyed `model` or `model@region`) with their pending failure counts."""
        return {
            display_key(key): {**s.behaviour.to_dict(), "failures_remaining": sum(s.remaining)}
            for key, s in self._scenarios.items()
        }

    def outages_snapshot(self) -> dict[str, Any]:
        return {region: asdict(o) for region, o in self._outages.items()}


# --------------------------------------------------------------------------- replies


class FinishReason(enum.Enum):
    """Why generation ended, before each vendor names it (stop / end_turn / STOP …)."""

    END = "end"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"
    CONTENT_FILTER = "content_filter"


@dataclass(frozen=True, slots=True)
class Completion:
    """The output of one call as a list of tokens (each streamed as one delta)."""

    tokens: tuple[str, ...]
    finish: FinishReason
    stop_sequence: str | None = None
    prompt_blocked: bool = False
    """The prompt itself was refused (no output at all), as opposed to a reply cut short."""

    @property
    def text(self) -> str:
        return "".join(self.tokens)


_WORD = re.compile(r"\s*\S+(?:\s+$)?")


def reply_tokens(model: str, behaviour: Behaviour) -> list[str]:
    """The deterministic reply: the scripted `reply`, or a greeting padded with lorem words."""
    if behaviour.reply is not None:
        return _WORD.findall(behaviour.reply)
    words = ["Hello", " from", f" {model}."]
    n = behaviour.reply_tokens
    words.extend(" " + _LOREM[i % len(_LOREM)] for i in range(max(0, n - len(words))))
    return words[:n]


def compose_completion(
    model: str, behaviour: Behaviour, max_tokens: int | None, stop: Sequence[str] = ()
) -> Completion:
    """Apply the caller's token cap, stop sequences and any scripted refusal to the reply."""
    if behaviour.content_filter == "prompt":
        return Completion((), FinishReason.CONTENT_FILTER, prompt_blocked=True)
    tokens = reply_tokens(model, behaviour)
    if behaviour.content_filter == "response":
        kept = len(tokens) // 2
        if max_tokens is None or kept <= max_tokens:
            return Completion(tuple(tokens[:kept]), FinishReason.CONTENT_FILTER)
    capped = max_tokens is not None and len(tokens) > max_tokens
    if capped:
        tokens = tokens[:max_tokens]
    if stop:
        text = "".join(tokens)
        hits = [(text.find(s), s) for s in stop if s and s in text]
        if hits:
            cut, seq = min(hits)
            return Completion(_truncate_tokens(tokens, cut), FinishReason.STOP_SEQUENCE, seq)
    return Completion(tuple(tokens), FinishReason.LENGTH if capped else FinishReason.END)


def _truncate_tokens(tokens: Sequence[str], cut: int) -> tuple[str, ...]:
    out, used = [], 0
    for tok in tokens:
        if used + len(tok) <= cut:
            out.append(tok)
            used += len(tok)
            continue
        if cut > used:
            out.append(tok[: cut - used])
        break
    return tuple(out)


def count_tokens(text: str) -> int:
    """A rough, deterministic token count: whitespace-separated words."""
    return len(text.split())


def count_prompt_tokens(message_texts: Iterable[str], message_count: int) -> int:
    """Words in every message plus 3 per message (roughly OpenAI's per-message overhead)."""
    return sum(count_tokens(t) for t in message_texts) + 3 * message_count


def embedding_vector(model: str, text: str, dimensions: int) -> list[float]:
    """A unit vector seeded by (model, text): same input, same vector, on any machine.

    Shorter `dimensions` give a prefix of the longer vector, renormalised — the same
    property as OpenAI's shortened text-embedding-3 vectors.
    """
    seed = int.from_bytes(hashlib.sha256(f"{model}\0{text}".encode()).digest()[:8], "big")
    rng = random.Random(seed)
    values = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [v / norm for v in values]


def pack_float32(values: Sequence[float]) -> bytes:
    """Little-endian float32, the layout SDKs expect behind base64 embeddings."""
    return struct.pack(f"<{len(values)}f", *values)


# --------------------------------------------------------------------------- pacing


class TokenPacer:
    """Spaces tokens at `tokens_per_second` on an absolute schedule (no drift).

    Zero or negative rate means as fast as possible: no sleeping at all, so the
    zero-latency benchmark measures the gateway and not the simulator.
    """

    def __init__(self, tokens_per_second: float) -> None:
        self._interval = 1.0 / tokens_per_second if tokens_per_second > 0 else 0.0
        self._loop = asyncio.get_running_loop()
        self._start = self._loop.time()

    async def before_token(self, index: int) -> None:
        """Wait until token `index` (0-based) is due."""
        if self._interval:
            delay = self._start + (index + 1) * self._interval - self._loop.time()
            if delay > 0:
                await asyncio.sleep(delay)


async def wait_latency(behaviour: Behaviour) -> None:
    """Sleep the scripted time-to-first-byte (cancellable when the client leaves)."""
    if behaviour.latency_ms > 0:
        await asyncio.sleep(behaviour.latency_ms / 1000.0)


async def unary_generation_delay(behaviour: Behaviour, tokens: int) -> None:
    """A unary reply takes as long as streaming its tokens would have."""
    if behaviour.tokens_per_second > 0 and tokens > 0:
        await asyncio.sleep(tokens / behaviour.tokens_per_second)


async def hang() -> None:
    """Never answer; returns only by cancellation (the client hung up or shutdown)."""
    await asyncio.get_running_loop().create_future()


# --------------------------------------------------------------------------- statistics


@dataclass(slots=True)
class SimStats:
    """Counters that tests read to prove what the gateway did upstream.

    `in_flight` is a live gauge and survives `reset()`, otherwise calls that are still
    running when a test resets would drive it negative.
    """

    requests: int = 0
    requests_by_model: dict[str, int] = field(default_factory=dict)
    requests_by_vendor: dict[str, int] = field(default_factory=dict)
    requests_by_region: dict[str, int] = field(default_factory=dict)
    requests_by_region_model: dict[str, int] = field(default_factory=dict)
    responses_by_status: dict[str, int] = field(default_factory=dict)
    streams_started: int = 0
    streams_completed: int = 0
    client_disconnects: int = 0
    connections_dropped: int = 0
    in_flight: int = 0

    def reset(self) -> None:
        self.requests = self.streams_started = self.streams_completed = 0
        self.client_disconnects = self.connections_dropped = 0
        self.requests_by_model = {}
        self.requests_by_vendor = {}
        self.requests_by_region = {}
        self.requests_by_region_model = {}
        self.responses_by_status = {}

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


class _HasStatus(Protocol):
    @property
    def status(self) -> int: ...


_R = TypeVar("_R", bound=_HasStatus)


class CallScope:
    """Bookkeeping for one vendor API call from arrival to its end.

    Used as a context manager around the handler body. A cancellation or connection
    error while the connection is gone counts as a client disconnect — unless the
    simulator itself dropped the connection on purpose (`drop_after_tokens`).
    """

    __slots__ = ("_connection_lost", "_dropping", "_stats")

    def __init__(
        self, stats: SimStats, connection_lost: Callable[[], bool], vendor: str | None = None
    ) -> None:
        self._stats = stats
        self._connection_lost = connection_lost
        self._dropping = False
        if vendor is not None:
            _bump(stats.requests_by_vendor, vendor)

    def __enter__(self) -> Self:
        self._stats.requests += 1
        self._stats.in_flight += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stats.in_flight -= 1
        if exc_type is None or self._dropping:
            return
        gone = issubclass(exc_type, asyncio.CancelledError | ConnectionError)
        if gone and self._connection_lost():
            self._stats.client_disconnects += 1

    def model(self, name: str, region: str | None = None) -> None:
        """Attribute the call to a model (and region) once the request has named it.

        `requests_by_region_model` is keyed `region/model`, so a test can tell which
        region of a multi-region vendor served a given model.
        """
        _bump(self._stats.requests_by_model, name)
        if region is not None:
            _bump(self._stats.requests_by_region, region)
            _bump(self._stats.requests_by_region_model, f"{region}/{name}")

    def responded(self, response: _R) -> _R:
        """Count the status of the response being returned (or started) and pass it on."""
        key = str(response.status)
        counts = self._stats.responses_by_status
        counts[key] = counts.get(key, 0) + 1
        return response

    def stream_started(self) -> None:
        self._stats.streams_started += 1

    def stream_completed(self) -> None:
        self._stats.streams_completed += 1

    def dropping(self) -> None:
        """Mark the coming connection loss as scripted, not the client's doing."""
        self._dropping = True
        self._stats.connections_dropped += 1


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


@dataclass(slots=True)
class SimulatorState:
    """Everything mutable in a running simulator; owned by the app, passed to each protocol."""

    scenarios: ScenarioBook = field(default_factory=ScenarioBook)
    stats: SimStats = field(default_factory=SimStats)
