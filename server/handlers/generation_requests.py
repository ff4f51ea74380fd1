"""Validate a Generate/StreamGenerate request and turn it into domain values.

Every problem is collected (not just the first) so one round trip tells the caller
everything that is wrong, each naming its field path as the proto spells it.
"""

from __future__ import annotations

from dataclasses import dataclass

from llmgateway.v1 import generation_pb2 as pb

from server.errors import FieldViolation, invalid_argument
from server.fallback.chain import Target
from server.providers.base import ChatMessage, GenerationParams, ProviderRequest

ROLES = ("user", "assistant", "system")
MAX_STOP_SEQUENCES = 4
MAX_METADATA = 32
MAX_OUTPUT_TOKENS = 1_000_000

GenerationRequest = pb.GenerateRequest | pb.StreamGenerateRequest


@dataclass(frozen=True)
class ParsedRequest:
    model: str
    targets: tuple[Target, ...]
    region: str
    provider_request: ProviderRequest
    # Set when a prompt template or a bot configured the request (for traceability).
    prompt_key: str = ""
    prompt_version: int = 0
    bot_config_id: str = ""


def _message_text(message: pb.Message) -> str:
    if not message.parts:
        return message.content
    return message.content + "".join(part.text for part in message.parts)


def _check_config(config: pb.GenerationConfig, bad: list[FieldViolation]) -> GenerationParams:
    if config.HasField("max_output_tokens") and not 0 < config.max_output_tokens <= MAX_OUTPUT_TOKENS:
        bad.append(FieldViolation("config.max_output_tokens",
                                  f"must be between 1 and {MAX_OUTPUT_TOKENS}"))
    if config.HasField("temperature") and not 0 <= config.temperature <= 2:
        bad.append(FieldViolation("config.temperature", "must be between 0 and 2"))
    if config.HasField("top_p") and not 0 < config.top_p <= 1:
        bad.append(FieldViolation("config.top_p", "must be in (0, 1]"))
    if config.HasField("top_k") and config.top_k <= 0:
        bad.append(FieldViolation("config.top_k", "must be positive"))
    if len(config.stop_sequences) > MAX_STOP_SEQUENCES:
        bad.append(FieldViolation("config.stop_sequences",
                                  f"at most {MAX_STOP_SEQUENCES} sequences"))
    bad.extend(FieldViolation(f"config.stop_sequences[{i}]", "must not be empty")
               for i, stop in enumerate(config.stop_sequences) if not stop)
    return GenerationParams(
        max_output_tokens=config.max_output_tokens if config.HasField("max_output_tokens") else None,
        temperature=round(config.temperature, 4) if config.HasField("temperature") else None,
        top_p=round(config.top_p, 4) if config.HasField("top_p") else None,
        top_k=config.top_k if config.HasField("top_k") else None,
        stop=tuple(config.stop_sequences),
    )


def parse(request: GenerationRequest, max_prompt_bytes: int) -> ParsedRequest:
    """Validate ``request``; raise INVALID_ARGUMENT listing every bad field."""
    bad: list[FieldViolation] = []
    configured = bool(request.bot) or request.HasField("prompt")
    if not request.messages and not configured:  # a template's user part may be the message
        bad.append(FieldViolation("messages", "at least one message is required"))
    system_parts = [request.system_instruction] if request.system_instruction else []
    messages: list[ChatMessage] = []
    size = len(request.system_instruction.encode())
    for i, message in enumerate(request.messages):
        text = _message_text(message)
        size += len(text.encode())
        if message.role not in ROLES:
            bad.append(FieldViolation(f"messages[{i}].role",
                                      f"must be one of {', '.join(ROLES)} (got {message.role[:20]!r})"))
        if not text:
            bad.append(FieldViolation(f"messages[{i}].content", "must not be empty"))
        if message.role == "system":
            system_parts.append(text)
        else:
            messages.append(ChatMessage(message.role, text))
    if size > max_prompt_bytes:
        bad.append(FieldViolation("messages", f"the prompt is {size} bytes; at most "
                                  f"{max_prompt_bytes} are accepted"))
    if request.messages and not messages and not configured:
        bad.append(FieldViolation("messages", "at least one user or assistant message is required"))
    params = _check_config(request.config, bad)
    if len(request.metadata) > MAX_METADATA:
        bad.append(FieldViolation("metadata", f"at most {MAX_METADATA} entries"))
    if len(request.end_user_id) > 256:
        bad.append(FieldViolation("end_user_id", "at most 256 characters"))
    if bad:
        raise invalid_argument(bad)
    targets = tuple(Target(t.provider, t.model, t.region) for t in request.targets)
    provider_request = ProviderRequest(
        model=request.model, messages=tuple(messages), system="\n\n".join(system_parts),
        params=params, region=request.region)
    return ParsedRequest(request.model, targets, request.region, provider_request)
