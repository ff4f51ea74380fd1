"""What a scripted scenario says a model does: the `Behaviour` model and its parsing.

A scenario is plain JSON (a control-API PUT body or an entry of a scenario file), so any
language, curl or `simulator.ctl` can script one. This module turns it into a frozen,
validated `Behaviour` (and a `RegionOutage` for a whole region); the `ScenarioBook`
decides per call which one applies, `faults` how a reply that got its HTTP 200 ends,
and each vendor module renders the outcome in its own wire format — so a scripted fault
means the same thing whichever SDK is pointed at the simulator.

Behaviour fields (all optional):

    latency_ms, tokens_per_second     time to first byte; token rate (0: as fast as possible)
    reply, reply_tokens               the text (default: a greeting + lorem, 12 tokens)
    failures: [{status, count, retry_after_s, message, code}]   fail the next calls, in order
    always_status                     fail every call with this HTTP status
    timeout                           never answer
    not_found                         404 model not found
    content_filter                    "prompt" (refuse) | "response" (stop half-way)
    cached_prompt_tokens, cache_write_tokens    the prompt-cache part of usage
    drop_after_tokens: N              cut the TCP connection after N tokens
    drop_error_status                 ... instead, the vendor's in-stream error for it
    truncate_after_chunks: N          end a stream cleanly after N text chunks (0: none),
                                      without the vendor's terminal event
    omit_terminal_event               every text chunk, then that same clean, unmarked end
    truncate_body                     a unary JSON body cut in half (200, right length)
    misreport_usage                   "zero" | "huge": usage that lies
    output_fault                      "malformed_json" | "schema_mismatch" | "undeclared_tool"
                                      | "malformed_arguments": a tool call or JSON answer
                                      that is wrong (see `simulator.tooling`)

The last four are silent misbehaviour: the client sees success and a clean end of the
body, and must notice itself that the answer is incomplete (see `simulator.faults`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from simulator.validation import (
    ScenarioError,
    boolean,
    http_status,
    non_negative_int,
    non_negative_number,
    one_of,
    optional_string,
    reject_unknown,
)

__all__ = [
    "CONTENT_FILTER_MODES",
    "DEFAULT_REPLY_TOKENS",
    "MISREPORT_USAGE_MODES",
    "Behaviour",
    "RegionOutage",
    "ScenarioError",
    "ScriptedFailure",
]

DEFAULT_REPLY_TOKENS = 12
CONTENT_FILTER_MODES = ("prompt", "response")
MISREPORT_USAGE_MODES = ("zero", "huge")
OUTPUT_FAULT_MODES = ("malformed_json", "schema_mismatch", "undeclared_tool",
                      "malformed_arguments")


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

    @classmethod
    def from_mapping(cls, item: Any, where: str) -> ScriptedFailure:
        if not isinstance(item, Mapping) or "status" not in item:
            raise ScenarioError(f"{where} must be an object with a status")
        reject_unknown(item, cls.__dataclass_fields__, f"{where}: unknown field(s)")
        retry = item.get("retry_after_s")
        return cls(
            status=http_status(item["status"], f"{where}.status"),
            count=non_negative_int(item.get("count", 1), f"{where}.count"),
            retry_after_s=None if retry is None else non_negative_number(retry, where),
            message=optional_string(item.get("message"), f"{where}.message"),
            code=optional_string(item.get("code"), f"{where}.code"),
        )


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

    Silent misbehaviour — the call "succeeds" but its answer is incomplete or wrong,
    as real vendors sometimes do (see `simulator.faults` for how each is rendered):
    `truncate_after_chunks: N` ends a stream cleanly after N text chunks (0: before the
    first token) without the vendor's terminal event; `omit_terminal_event` sends every
    text chunk and then ends the same way; `truncate_body` cuts a unary JSON body in
    half (status 200, JSON content type, matching Content-Length); `misreport_usage`
    reports usage as `"zero"` or `"huge"` (`faults.HUGE_TOKEN_COUNT`). A stream ends
    one scripted way, so `drop_after_tokens` and `truncate_after_chunks` exclude each
    other.
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
    truncate_after_chunks: int | None = None
    omit_terminal_event: bool = False
    truncate_body: bool = False
    misreport_usage: str | None = None
    output_fault: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Behaviour:
        """Validate a scripted behaviour; unknown keys are errors so typos do not pass silently."""
        if not isinstance(data, Mapping):
            raise ScenarioError("behaviour must be a JSON object")
        reject_unknown(data, cls.__dataclass_fields__, "unknown behaviour field(s)")
        given = {name: value for name, value in data.items() if value is not None}
        kwargs: dict[str, Any] = {}
        for name in ("latency_ms", "tokens_per_second"):
            if name in given:
                kwargs[name] = non_negative_number(given[name], name)
        for name in (
            "reply_tokens",
            "drop_after_tokens",
            "cached_prompt_tokens",
            "cache_write_tokens",
            "truncate_after_chunks",
        ):
            if name in given:
                kwargs[name] = non_negative_int(given[name], name)
        for name in ("drop_error_status", "always_status"):
            if name in given:
                kwargs[name] = http_status(given[name], name)
        for name in ("timeout", "not_found", "omit_terminal_event", "truncate_body"):
            if name in given:
                kwargs[name] = boolean(given[name], name)
        if "content_filter" in given:
            kwargs["content_filter"] = one_of(
                given["content_filter"], CONTENT_FILTER_MODES, "content_filter"
            )
        if "misreport_usage" in given:
            kwargs["misreport_usage"] = one_of(
                given["misreport_usage"], MISREPORT_USAGE_MODES, "misreport_usage"
            )
        if "output_fault" in given:
            kwargs["output_fault"] = one_of(given["output_fault"], OUTPUT_FAULT_MODES,
                                            "output_fault")
        if "drop_after_tokens" in kwargs and "truncate_after_chunks" in kwargs:
            raise ScenarioError(
                "drop_after_tokens and truncate_after_chunks exclude each other "
                "(a stream ends one way)"
            )
        if "reply" in given:
            kwargs["reply"] = optional_string(given["reply"], "reply")
        if "failures" in given:
            kwargs["failures"] = _failures(given["failures"])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        """The scripted form, as the control API reports it."""
        out = asdict(self)
        out["failures"] = [asdict(f) for f in self.failures]
        return out


def _failures(value: Any) -> tuple[ScriptedFailure, ...]:
    if not isinstance(value, list):
        raise ScenarioError("failures must be a list")
    return tuple(
        ScriptedFailure.from_mapping(item, f"failures[{i}]") for i, item in enumerate(value)
    )


@dataclass(frozen=True, slots=True)
class RegionOutage:
    """A whole region answering every call with `status` ("region us-east-1 down")."""

    status: int = 503
    message: str | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> RegionOutage:
        if not isinstance(data, Mapping):
            raise ScenarioError("region outage must be a JSON object")
        reject_unknown(data, ("down", "status", "message"), "unknown region field(s)")
        message = optional_string(data.get("message"), "message")
        status = data.get("status")
        return cls(503 if status is None else http_status(status, "status"), message)
