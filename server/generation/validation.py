"""The rules a ``GenerationCall`` must follow, checked in one pass before any I/O.

Every problem is collected, not just the first, so one round trip tells the caller
everything that is wrong — messages, parameters, billing, retrieval and prompt alike —
each named by its field path as the proto spells it (``messages[0].role``,
``billing.wallet_id``, ``retrieval.top_k``). Checks that need the database (does the bot
exist, does the template need a variable) happen later, in the use case.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.kernel.config import RagConfig
from server.kernel.errors import FieldViolation
from server.generation.call import GenerationCall, PromptSelection, RetrievalRequest
from server.providers.base import ChatMessage, GenerationParams
from server.providers.content import (
    TOOL_CALL_ID,
    FormatKind,
    Image,
    ResponseFormat,
    Tool,
    ToolChoice,
    ToolChoiceMode,
)

ROLES = ("user", "assistant", "system", "tool")
# Tool and schema names every vendor accepts (OpenAI's rule; Gemini and Bedrock are wider).
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TOOLS = 128                     # OpenAI's limit, the lowest of the vendors
MAX_SCHEMA_BYTES = 64 * 1024        # one tool's or the response format's schema, as JSON
MAX_TOOL_CALLS = 128                # on one assistant message
MAX_IMAGES = 20                     # per request (Bedrock Converse's limit, the lowest)
MAX_IMAGE_BYTES = 3 * 1024 * 1024   # under the 4 MiB request cap and every vendor's limit
MAX_IMAGE_URL = 2048
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_STOP_SEQUENCES = 4
MAX_METADATA = 32
MAX_OUTPUT_TOKENS = 1_000_000
MAX_END_USER_ID = 256
MAX_PROMPT_KEY = 128
MAX_PROMPT_VARIABLES = 64


class SchemaVerdicts:
    """What ``check_schema`` said of the schemas seen lately, by digest.

    Checking a schema against the JSON Schema meta-schema costs milliseconds (7.8 ms for a
    16-property object on this machine: more than the rest of a tool call's gateway CPU),
    and callers send the same tool declarations call after call. So verdicts are kept in
    a bounded LRU keyed by a 16-byte digest of the schema's canonical JSON: a caller
    controls what is stored, never how much. ``jsonschema`` (~3 MB resident) is imported
    by the first schema to check, not at start-up."""

    def __init__(self, size: int = 1024) -> None:
        self._size = size
        self._seen: OrderedDict[bytes, str] = OrderedDict()

    def problem(self, schema: Mapping[str, Any], canonical: str) -> str:
        """"" for a valid schema, else what is wrong with it."""
        key = hashlib.blake2b(canonical.encode(), digest_size=16).digest()
        verdict = self._seen.get(key)
        if verdict is not None:
            self._seen.move_to_end(key)
            return verdict
        from jsonschema import Draft202012Validator
        from jsonschema.exceptions import SchemaError

        try:
            Draft202012Validator.check_schema(dict(schema))
            verdict = ""
        except SchemaError as error:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            verdict = f"not a valid JSON Schema at {where}: {error.message[:120]}"
        self._seen[key] = verdict
        if len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return verdict


@dataclass(frozen=True)
class CallLimits:
    """Size limits that come from the configuration, and the schema verdict memo."""

    max_prompt_bytes: int
    rag: RagConfig
    schemas: SchemaVerdicts = field(default_factory=SchemaVerdicts)


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


def image_violations(image: Image, path: str) -> list[FieldViolation]:
    """One image part (``path`` is its proto path, e.g. ``messages[0].parts[1].image``)."""
    if bool(image.data) == bool(image.url):
        return [FieldViolation(path, "set exactly one of data and url")]
    if image.url:
        if not image.url.startswith("https://") or len(image.url) > MAX_IMAGE_URL:
            return [FieldViolation(f"{path}.url", f"must be an https URL of at most "
                                   f"{MAX_IMAGE_URL} characters")]
        return []
    bad = []
    if image.mime_type not in IMAGE_TYPES:
        bad.append(FieldViolation(f"{path}.mime_type", f"must be one of "
                                  f"{', '.join(IMAGE_TYPES)} (got {image.mime_type[:40]!r})"))
    if len(image.data) > MAX_IMAGE_BYTES:
        bad.append(FieldViolation(f"{path}.data", f"the image is {len(image.data)} bytes; at "
                                  f"most {MAX_IMAGE_BYTES} are accepted"))
    return bad


def _message_shape(i: int, message: ChatMessage, answered: set[str],
                   called: set[str]) -> list[FieldViolation]:
    """What each role may carry; tool results must answer a call made earlier."""
    bad: list[FieldViolation] = []
    at = f"messages[{i}]"
    if message.role == "tool":
        if not message.tool_call_id:
            bad.append(FieldViolation(f"{at}.tool_call_id", "required on a tool message"))
        elif message.tool_call_id not in called:
            bad.append(FieldViolation(f"{at}.tool_call_id", "answers no tool call made by an "
                                      "earlier assistant message"))
        elif message.tool_call_id in answered:
            bad.append(FieldViolation(f"{at}.tool_call_id", "this call was already answered"))
        answered.add(message.tool_call_id)
    elif message.tool_call_id:
        bad.append(FieldViolation(f"{at}.tool_call_id", "only tool messages answer a call"))
    if message.tool_calls and message.role != "assistant":
        bad.append(FieldViolation(f"{at}.tool_calls", "only assistant messages make calls"))
    if len(message.tool_calls) > MAX_TOOL_CALLS:
        bad.append(FieldViolation(f"{at}.tool_calls", f"at most {MAX_TOOL_CALLS} calls"))
    for j, tool_call in enumerate(message.tool_calls[:MAX_TOOL_CALLS]):
        if not TOOL_CALL_ID.fullmatch(tool_call.id):
            bad.append(FieldViolation(f"{at}.tool_calls[{j}].id",
                                      "must be 1-64 characters of [A-Za-z0-9_-]"))
        elif tool_call.id in called:
            bad.append(FieldViolation(f"{at}.tool_calls[{j}].id", "repeats an earlier call's id"))
        called.add(tool_call.id)
        if not NAME.fullmatch(tool_call.name):
            bad.append(FieldViolation(f"{at}.tool_calls[{j}].name",
                                      "must be 1-64 characters of [A-Za-z0-9_-]"))
        if not _is_json_object(tool_call.arguments or "{}"):
            bad.append(FieldViolation(f"{at}.tool_calls[{j}].arguments",
                                      "must be the JSON text of an object"))
    if message.images and message.role != "user":
        bad.append(FieldViolation(f"{at}.parts", "only user messages may carry images"))
    empty_allowed = bool(message.tool_calls or message.images)
    if not message.content and not empty_allowed:
        bad.append(FieldViolation(f"{at}.content", "must not be empty"))
    return bad


def _unanswered(pending: dict[str, str]) -> list[FieldViolation]:
    return [FieldViolation(path, "this call has no tool message answering it right after "
                           "the assistant message (send each call's result as a "
                           "\"tool\" message with its tool_call_id)")
            for path in pending.values()]


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), Mapping)
    except ValueError:
        return False


def _messages(call: GenerationCall, max_prompt_bytes: int) -> list[FieldViolation]:
    bad: list[FieldViolation] = []
    if not call.messages and not call.preset:  # a template's user part may be the message
        bad.append(FieldViolation("messages", "at least one message is required"))
    size = len(call.system_instruction.encode())
    answered: set[str] = set()
    called: set[str] = set()
    # Calls of the latest assistant turn not answered yet: every vendor but Gemini wants
    # each call answered by tool messages right after the turn that made it.
    pending: dict[str, str] = {}
    images = 0
    for i, message in enumerate(call.messages):
        size += len(message.content.encode())
        images += len(message.images)
        if message.role != "tool" and message.role != "system" and pending:
            bad += _unanswered(pending)
            pending = {}
        if message.role == "assistant":
            pending = {c.id: f"messages[{i}].tool_calls[{j}].id"
                       for j, c in enumerate(message.tool_calls[:MAX_TOOL_CALLS])}
        elif message.role == "tool":
            pending.pop(message.tool_call_id, None)
        if message.role not in ROLES:
            bad.append(FieldViolation(f"messages[{i}].role", f"must be one of "
                                      f"{', '.join(ROLES)} (got {message.role[:20]!r})"))
            if not message.content:
                bad.append(FieldViolation(f"messages[{i}].content", "must not be empty"))
        else:
            bad += _message_shape(i, message, answered, called)
    bad += _unanswered(pending)
    if images > MAX_IMAGES:
        bad.append(FieldViolation("messages", f"{images} images; at most {MAX_IMAGES} are "
                                  "accepted per request"))
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


def _schema(schema: Mapping[str, Any], path: str, verdicts: SchemaVerdicts,
            encoded: Callable[[], str] | None = None) -> list[FieldViolation]:
    """A schema every vendor takes: a valid JSON Schema whose top level is an object.
    ``encoded`` gives its canonical JSON when that is already known (``Tool.schema_json``)."""
    try:
        canonical = encoded() if encoded is not None else \
            json.dumps(schema, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return [FieldViolation(path, "must be JSON")]
    if len(canonical) > MAX_SCHEMA_BYTES:
        return [FieldViolation(path, f"the schema is {len(canonical)} bytes as JSON; at most "
                               f"{MAX_SCHEMA_BYTES} are accepted")]
    if schema.get("type", "object") != "object":
        return [FieldViolation(path, 'the top level must be {"type": "object", ...} (every '
                               "vendor requires an object here)")]
    problem = verdicts.problem(schema, canonical)
    return [FieldViolation(path, problem)] if problem else []


def _tools(tools: tuple[Tool, ...], choice: ToolChoice | None,
           verdicts: SchemaVerdicts) -> list[FieldViolation]:
    bad: list[FieldViolation] = []
    if len(tools) > MAX_TOOLS:
        bad.append(FieldViolation("tools", f"{len(tools)} tools; at most {MAX_TOOLS} are "
                                  "accepted"))
    names: set[str] = set()
    for i, tool in enumerate(tools[:MAX_TOOLS]):
        if not NAME.fullmatch(tool.name):
            bad.append(FieldViolation(f"tools[{i}].name",
                                      "must be 1-64 characters of [A-Za-z0-9_-]"))
        elif tool.name in names:
            bad.append(FieldViolation(f"tools[{i}].name", f"{tool.name!r} is declared twice"))
        names.add(tool.name)
        bad += _schema(tool.parameters, f"tools[{i}].parameters", verdicts,
                       lambda tool=tool: tool.schema_json)
    if choice is None:
        return bad
    if choice.mode is ToolChoiceMode.TOOL:
        if not choice.name:
            bad.append(FieldViolation("tool_choice.name", "required with mode TOOL"))
        elif choice.name not in names:
            bad.append(FieldViolation("tool_choice.name", f"{choice.name[:64]!r} is not a "
                                      "declared tool"))
    elif choice.name:
        bad.append(FieldViolation("tool_choice.name", "only mode TOOL names a tool"))
    elif choice.mode is not ToolChoiceMode.AUTO and not tools:
        bad.append(FieldViolation("tool_choice", "needs tools to choose from"))
    return bad


def _response_format(fmt: ResponseFormat, verdicts: SchemaVerdicts) -> list[FieldViolation]:
    bad: list[FieldViolation] = []
    if not NAME.fullmatch(fmt.name):
        bad.append(FieldViolation("response_format.name",
                                  "must be 1-64 characters of [A-Za-z0-9_-]"))
    if fmt.kind is FormatKind.JSON_SCHEMA:
        if fmt.schema is None:
            bad.append(FieldViolation("response_format.schema", "required with JSON_SCHEMA"))
        else:
            bad += _schema(fmt.schema, "response_format.schema", verdicts)
    elif fmt.schema is not None:
        bad.append(FieldViolation("response_format.schema", "only JSON_SCHEMA takes a schema"))
    if fmt.strict and fmt.kind is not FormatKind.JSON_SCHEMA:
        bad.append(FieldViolation("response_format.strict", "only JSON_SCHEMA can be strict"))
    return bad


def call_violations(call: GenerationCall, limits: CallLimits) -> list[FieldViolation]:
    """Every bad field of ``call``, in the order of the request's sections."""
    bad = _messages(call, limits.max_prompt_bytes)
    bad += _params(call.params)
    bad += _tools(call.tools, call.tool_choice, limits.schemas)
    if call.response_format is not None:
        bad += _response_format(call.response_format, limits.schemas)
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
