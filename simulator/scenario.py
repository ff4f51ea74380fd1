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

    Precedence when several apply: `not_found`, then pending one-shot `failures`,
    then `always_status`, then `timeout`, then a (possibly dropped) successful reply.
    """

    latency_ms: float = 0.0
    tokens_per_second: float = 0.0
    reply_tokens: int = DEFAULT_REPLY_TOKENS
    reply: str | None = None
    failures: tuple[ScriptedFailure, ...] = ()
    always_status: int | None = None
    timeout: bool = False
    drop_after_tokens: int | None = None
    not_found: bool = False

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
        if data.get("drop_after_tokens") is not None:
            kwargs["drop_after_tokens"] = _non_negative_int(
                data["drop_after_tokens"], "drop_after_tokens"
            )
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


def load_scenario_file(path: str | Path) -> dict[str, Behaviour]:
    """Read `{"scenarios": {model: behaviour}}` (or a bare `{model: behaviour}`) from YAML/JSON.

    The file format is the control API's PUT body keyed by model, so a scenario can be
    tried interactively and then frozen into a file unchanged.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        data = json.loads(text)
    else:
        import yaml  # type: ignore[import-untyped,unused-ignore]  # only needed for YAML files

        data = yaml.safe_load(text) or {}
    if isinstance(data, Mapping) and isinstance(data.get("scenarios"), Mapping):
        data = data["scenarios"]
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{path}: expected a mapping of model name to behaviour")
    out = {}
    for model, behaviour in data.items():
        try:
            out[str(model)] = Behaviour.from_mapping(behaviour or {})
        except ScenarioError as exc:
            raise ScenarioError(f"{path}: model {model!r}: {exc}") from None
    return out


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


class ScenarioBook:
    """Scripted behaviours keyed by model (vendors may compose keys, e.g. region/model).

    `plan()` is synchronous and contains no await, so on the single event loop each call
    consumes exactly one pending failure even when many requests arrive at once.
    """

    def __init__(self) -> None:
        self._scenarios: dict[str, _Scenario] = {}
        self._default = Behaviour()

    def set(self, key: str, behaviour: Behaviour) -> None:
        """Replace the behaviour of `key` (and restart its failure script)."""
        self._scenarios[key] = _Scenario(behaviour, [f.count for f in behaviour.failures])

    def remove(self, key: str) -> bool:
        return self._scenarios.pop(key, None) is not None

    def clear(self) -> None:
        self._scenarios.clear()

    def names(self) -> list[str]:
        """Keys that have a scripted behaviour (including the wildcard, if set)."""
        return list(self._scenarios)

    def behaviour(self, key: str) -> Behaviour:
        """The behaviour that applies to `key` (its own, the wildcard's, or the default)."""
        scenario = self._scenarios.get(key) or self._scenarios.get(WILDCARD_KEY)
        return self._default if scenario is None else scenario.behaviour

    def plan(self, key: str) -> Plan:
        """Decide how the next call to `key` behaves, consuming a one-shot failure if any."""
        scenario = self._scenarios.get(key) or self._scenarios.get(WILDCARD_KEY)
        if scenario is None:
            return Plan(self._default)
        behaviour = scenario.behaviour
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
        """Behaviours plus how many scripted failures each still has pending."""
        return {
            key: {**s.behaviour.to_dict(), "failures_remaining": sum(s.remaining)}
            for key, s in self._scenarios.items()
        }


# --------------------------------------------------------------------------- replies


class FinishReason(enum.Enum):
    """Why generation ended, before each vendor names it (stop / end_turn / STOP …)."""

    END = "end"
    LENGTH = "length"
    STOP_SEQUENCE = "stop_sequence"


@dataclass(frozen=True, slots=True)
class Completion:
    """The output of one call as a list of tokens (each streamed as one delta)."""

    tokens: tuple[str, ...]
    finish: FinishReason
    stop_sequence: str | None = None

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
    """Apply the caller's token cap and stop sequences to the deterministic reply."""
    tokens = reply_tokens(model, behaviour)
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

    def __init__(self, stats: SimStats, connection_lost: Callable[[], bool]) -> None:
        self._stats = stats
        self._connection_lost = connection_lost
        self._dropping = False

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

    def model(self, name: str) -> None:
        """Attribute the call to a model once the request body has named it."""
        by_model = self._stats.requests_by_model
        by_model[name] = by_model.get(name, 0) + 1

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


@dataclass(slots=True)
class SimulatorState:
    """Everything mutable in a running simulator; owned by the app, passed to each protocol."""

    scenarios: ScenarioBook = field(default_factory=ScenarioBook)
    stats: SimStats = field(default_factory=SimStats)
