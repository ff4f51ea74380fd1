"""The prompt template value and how a request's variables turn it into messages."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.kernel.tenancy import local_name
from server.kernel.errors import FieldViolation, GatewayError, invalid_argument
from server.prompts.render import MissingVariables, Renderer


@dataclass(frozen=True)
class PromptTemplate:
    """One immutable version of a template."""

    key: str
    version: int
    system: str = ""
    structured: Any = None
    user: str = ""
    temperature: float | None = None
    max_output_tokens: int | None = None
    model: str = ""
    description: str = ""
    active: bool = False
    created_at: datetime | None = None


@dataclass(frozen=True)
class RenderedPrompt:
    key: str
    version: int
    system: str
    user: str


def render(template: PromptTemplate, renderer: Renderer, variables: Mapping[str, str], *,
           strict: bool = True, field_prefix: str = "prompt.variables") -> RenderedPrompt:
    """Render both parts; a missing variable is INVALID_ARGUMENT naming it."""
    try:
        if template.structured is not None:
            system = renderer.render_structured(template.structured, variables, strict=strict)
        else:
            system = renderer.render_text(template.system, variables, strict=strict)
        user = renderer.render_text(template.user, variables, strict=strict) \
            if template.user else ""
    except MissingVariables as missing:
        raise invalid_argument([
            FieldViolation(f"{field_prefix}[{name}]",
                           f"template {template.key!r} v{template.version} needs {{{{{name}}}}}")
            for name in missing.names]) from None
    return RenderedPrompt(template.key, template.version, system, user)


def validate_template(template: PromptTemplate, prefix: str = "template") -> None:
    bad: list[FieldViolation] = []
    key = local_name(template.key)  # the rule is on the tenant's own name
    if not key or len(key) > 128 or not key.replace("-", "").replace(
            "_", "").replace(".", "").isalnum():
        bad.append(FieldViolation(f"{prefix}.key", "1..128 characters of letters, digits, "
                                  "'-', '_' and '.'"))
    if not template.system and template.structured is None:
        bad.append(FieldViolation(f"{prefix}.system", "set system or structured"))
    if template.system and template.structured is not None:
        bad.append(FieldViolation(f"{prefix}.structured", "set system or structured, not both"))
    if template.temperature is not None and not 0 <= template.temperature <= 2:
        bad.append(FieldViolation(f"{prefix}.temperature", "must be between 0 and 2"))
    if template.max_output_tokens is not None and template.max_output_tokens <= 0:
        bad.append(FieldViolation(f"{prefix}.max_output_tokens", "must be positive"))
    if bad:
        raise invalid_argument(bad)


def not_found(key: str, version: int) -> GatewayError:
    from server.kernel.errors import Fault

    key = local_name(key)  # the caller's name, never the stored (tenant) form
    what = f"version {version} of prompt {key!r}" if version else f"an active prompt {key!r}"
    return GatewayError(Fault.NOT_FOUND, "NOT_FOUND", f"there is no {what}",
                        metadata={"prompt_key": key, "version": str(version)})
