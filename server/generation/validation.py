"""The rules a ``GenerationCall`` must follow, checked in one pass before any I/O.

Every problem is collected, not just the first, so one round trip tells the caller
everything that is wrong — messages, parameters, billing, retrieval and prompt alike —
each named by its field path as the proto spells it (``messages[0].role``,
``billing.wallet_id``, ``retrieval.top_k``). Checks that need the database (does the bot
exist, does the template need a variable) happen later, in the use case.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.kernel.config import RagConfig
from server.kernel.errors import FieldViolation
from server.generation.call import GenerationCall, PromptSelection, RetrievalRequest
from server.providers.base import GenerationParams

ROLES = ("user", "assistant", "system")
MAX_STOP_SEQUENCES = 4
MAX_METADATA = 32
MAX_OUTPUT_TOKENS = 1_000_000
MAX_END_USER_ID = 256
MAX_PROMPT_KEY = 128
MAX_PROMPT_VARIABLES = 64


@dataclass(frozen=True)
class CallLimits:
    """Size limits that come from the configuration."""

    max_prompt_bytes: int
    rag: RagConfig


def _params(params: GenerationParams) -> list[FieldViolation]:
    bad: list[FieldViolation] = []
    if params.max_output_tokens is not None and \
            not 0 < params.max_output_tokens <= MAX_OUTPUT_TOKENS:
        bad.append(FieldViolation("config.max_output_tokens",
                                  f"must be between 1 and {MAX_OUTPUT_TOKENS}"))
    if params.temperature is not None and not 0 <= params.temperature <= 2:
        bad.append(FieldViolation("config.temperature", "must be between 0 and 2"))
    if params.top_p is not None and not 0 < params.top_p <= 1:
        bad.append(FieldViolation("config.top_p", "must be in (0, 1]"))
    if params.top_k is not None and params.top_k <= 0:
        bad.append(FieldViolation("config.top_k", "must be positive"))
    if len(params.stop) > MAX_STOP_SEQUENCES:
        bad.append(FieldViolation("config.stop_sequences",
                                  f"at most {MAX_STOP_SEQUENCES} sequences"))
    bad.extend(FieldViolation(f"config.stop_sequences[{i}]", "must not be empty")
               for i, stop in enumerate(params.stop) if not stop)
    return bad


def _messages(call: GenerationCall, max_prompt_bytes: int) -> list[FieldViolation]:
    bad: list[FieldViolation] = []
    if not call.messages and not call.preset:  # a template's user part may be the message
        bad.append(FieldViolation("messages", "at least one message is required"))
    size = len(call.system_instruction.encode())
    for i, message in enumerate(call.messages):
        size += len(message.content.encode())
        if message.role not in ROLES:
            bad.append(FieldViolation(f"messages[{i}].role", f"must be one of "
                                      f"{', '.join(ROLES)} (got {message.role[:20]!r})"))
        if not message.content:
            bad.append(FieldViolation(f"messages[{i}].content", "must not be empty"))
    if size > max_prompt_bytes:
        bad.append(FieldViolation("messages", f"the prompt is {size} bytes; at most "
                                  f"{max_prompt_bytes} are accepted"))
    conversation = [m for m in call.messages if m.role != "system"]
    if call.messages and not conversation and not call.preset:
        bad.append(FieldViolation("messages",
                                  "at least one user or assistant message is required"))
    elif call.retrieval is not None and not call.preset and \
            not any(m.role == "user" for m in conversation):
        bad.append(FieldViolation("messages",
                                  "a grounded request needs a user message to search for"))
    return bad


def _prompt(prompt: PromptSelection) -> list[FieldViolation]:
    bad: list[FieldViolation] = []
    if len(prompt.key) > MAX_PROMPT_KEY:
        bad.append(FieldViolation("prompt.key", f"at most {MAX_PROMPT_KEY} characters"))
    if prompt.version < 0:
        bad.append(FieldViolation("prompt.version", "must not be negative"))
    if len(prompt.variables) > MAX_PROMPT_VARIABLES:
        bad.append(FieldViolation("prompt.variables",
                                  f"at most {MAX_PROMPT_VARIABLES} variables"))
    return bad


def _retrieval(retrieval: RetrievalRequest, rag: RagConfig) -> list[FieldViolation]:
    bad = retrieval.search.violations(rag, "retrieval.", query_known=False)
    if not 0 <= retrieval.max_context_tokens <= rag.max_context_tokens:
        bad.append(FieldViolation("retrieval.max_context_tokens", f"must be between 1 and "
                                  f"{rag.max_context_tokens} (0 uses the default)"))
    return bad


def call_violations(call: GenerationCall, limits: CallLimits) -> list[FieldViolation]:
    """Every bad field of ``call``, in the order of the request's sections."""
    bad = _messages(call, limits.max_prompt_bytes)
    bad += _params(call.params)
    if len(call.metadata) > MAX_METADATA:
        bad.append(FieldViolation("metadata", f"at most {MAX_METADATA} entries"))
    if len(call.end_user_id) > MAX_END_USER_ID:
        bad.append(FieldViolation("end_user_id", f"at most {MAX_END_USER_ID} characters"))
    if call.billing is not None:
        bad += call.billing.violations("billing.")
    if call.retrieval is not None:
        bad += _retrieval(call.retrieval, limits.rag)
    if call.prompt is not None:
        bad += _prompt(call.prompt)
    return bad
