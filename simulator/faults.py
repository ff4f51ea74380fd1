"""Fault injection: how a call that got past its scripted errors actually ends.

A scripted `failures`/`always_status` error is answered before any output; this module
decides the endings that come *after* the HTTP 200, vendor-neutrally, so every vendor
module renders the same fault in its own wire shape:

- `COMPLETE`  — the reply as the vendor sends it, terminal event(s) and usage included.
- `DROPPED`   — `drop_after_tokens: N`: N text chunks, then the TCP connection is cut
  (the client sees a transport error).
- `FAILED`    — `drop_after_tokens: N` + `drop_error_status: S`: N text chunks, then the
  vendor's in-stream error for S (or, unary, an S error response after the delay).
- `TRUNCATED` — silent truncation, the fault a gateway must not pass on as success; the
  HTTP body ends properly (chunked encoding terminated, connection kept), so the client
  sees a clean end of stream and must notice what is missing itself:
    * `truncate_after_chunks: N` — N text chunks (0: none; the vendor's opening events
      such as OpenAI's role chunk, Anthropic's `message_start` or Bedrock's
      `messageStart` are still sent), then the end of the body, without the vendor's
      terminal event: OpenAI no `finish_reason` chunk, usage chunk or `data: [DONE]`;
      Anthropic no `content_block_stop`/`message_delta`/`message_stop`; Gemini no chunk
      with `finishReason`; Bedrock no `contentBlockStop`/`messageStop`/`metadata`.
    * `omit_terminal_event: true` — the same after *every* text chunk (the text looks
      complete, only the end marker is missing).
    * `truncate_body: true` — a unary reply's JSON cut in half: status 200, JSON content
      type, a Content-Length that matches the cut body (no transport error), invalid JSON.

`misreport_usage: "zero" | "huge"` is a different lie: the reply is whole but its usage
reports 0 tokens, or `HUGE_TOKEN_COUNT`, for prompt and output alike.

Streaming faults apply to streamed calls and `truncate_body` to unary ones; embeddings
know only `drop_after_tokens` (a cut connection).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from simulator.scenario import Behaviour

HUGE_TOKEN_COUNT = 1_000_000_000
"""What `misreport_usage: huge` reports: absurd, yet prompt + output still fits an int32."""


class Ending(enum.Enum):
    """How a reply that started (or would have started) with HTTP 200 ends."""

    COMPLETE = "complete"
    DROPPED = "dropped"
    FAILED = "failed"
    TRUNCATED = "truncated"


@dataclass(frozen=True, slots=True)
class ReplyScript:
    """The fault decision for one reply.

    `tokens` is how many text chunks a stream sends before `ending` (a unary reply
    spends that many tokens' generation time); `error_status` is set for `FAILED`.
    """

    tokens: int
    ending: Ending
    error_status: int | None = None


def stream_script(behaviour: Behaviour, tokens: int, *, late_errors: bool = True) -> ReplyScript:
    """How a stream of `tokens` text chunks ends under `behaviour`.

    `late_errors=False` is for a vendor rendering no in-stream error (the simulator's
    OpenAI): a `drop_error_status` drop is then a cut connection.
    """
    dropped = _dropped(behaviour, tokens, late_errors)
    if dropped is not None:
        return dropped
    if behaviour.truncate_after_chunks is not None:
        return ReplyScript(min(behaviour.truncate_after_chunks, tokens), Ending.TRUNCATED)
    if behaviour.omit_terminal_event:
        return ReplyScript(tokens, Ending.TRUNCATED)
    return ReplyScript(tokens, Ending.COMPLETE)


def unary_script(behaviour: Behaviour, tokens: int, *, late_errors: bool = True) -> ReplyScript:
    """How a unary reply of `tokens` tokens ends under `behaviour` (see `stream_script`)."""
    dropped = _dropped(behaviour, tokens, late_errors)
    if dropped is not None:
        return dropped
    return ReplyScript(tokens, Ending.TRUNCATED if behaviour.truncate_body else Ending.COMPLETE)


def _dropped(behaviour: Behaviour, tokens: int, late_errors: bool) -> ReplyScript | None:
    drop = behaviour.drop_after_tokens
    if drop is None:
        return None
    sent = min(drop, tokens)
    if late_errors and behaviour.drop_error_status is not None:
        return ReplyScript(sent, Ending.FAILED, behaviour.drop_error_status)
    return ReplyScript(sent, Ending.DROPPED)


def cut_json(body: bytes) -> bytes:
    """The first half of a JSON body, ending on a whole UTF-8 character.

    Never valid JSON: a compact JSON object's closing brace is its last byte.
    """
    return body[: len(body) // 2].decode("utf-8", "ignore").encode()


def reported_usage(behaviour: Behaviour, prompt_tokens: int, output_tokens: int) -> tuple[int, int]:
    """(prompt, output) token counts as the usage report states them — true unless the
    scenario scripts `misreport_usage`."""
    match behaviour.misreport_usage:
        case "zero":
            return 0, 0
        case "huge":
            return HUGE_TOKEN_COUNT, HUGE_TOKEN_COUNT
    return prompt_tokens, output_tokens
