"""Bots and prompt templates applied to a call ("configuration over code").

Precedence, most specific first: what the request says explicitly (model, targets,
parameters, prompt), then the bot's active configuration, then the template's defaults.
The result is a ``Prepared`` call — the provider request the router will send, where it
may go, and the ids that make the output traceable (prompt key + version, bot config id).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

from server.bots.store import BotConfig, BotStore
from server.kernel.errors import bad_field
from server.fallback.chain import Target
from server.generation.call import GenerationCall
from server.prompts.render import Renderer
from server.prompts.store import PromptStore
from server.prompts.templates import PromptTemplate, render
from server.kernel.tokens import BYTES_PER_TOKEN_WORST, IMAGE_PROMPT_TOKENS
from server.providers.base import ChatMessage, GenerationParams, ProviderRequest

# An image, as the bytes of text whose token bound is the most an image is billed as.
IMAGE_PROMPT_BYTES = IMAGE_PROMPT_TOKENS * BYTES_PER_TOKEN_WORST


@dataclass(frozen=True)
class Prepared:
    """A call ready to route: its provider request and where it may be served."""

    model: str
    targets: tuple[Target, ...]
    region: str
    request: ProviderRequest
    prompt_key: str = ""
    prompt_version: int = 0
    bot_config_id: str = ""

    @property
    def prompt_bytes(self) -> int:
        """The prompt's size, what its token estimates start from: the text, the tool
        declarations and calls the vendor reads, and each image at the bytes of text that
        would count as many tokens as the largest image a vendor bills."""
        request = self.request
        size = len(request.system.encode())
        for m in request.messages:
            size += len(m.content.encode()) + len(m.images) * IMAGE_PROMPT_BYTES
            size += sum(len(c.name) + len(c.arguments.encode()) for c in m.tool_calls)
        for tool in request.tools:
            size += len(tool.name) + len(tool.description.encode()) + len(tool.schema_json)
        if request.response_format is not None and request.response_format.schema:
            size += len(json.dumps(request.response_format.schema))
        return size

    def last_user_message(self) -> str | None:
        for message in reversed(self.request.messages):
            if message.role == "user":
                return message.content
        return None


def prepare(call: GenerationCall) -> Prepared:
    """The call as it stands without bot or template: system-role messages join the
    system instruction (every vendor takes system text apart from the turns)."""
    system = [call.system_instruction] if call.system_instruction else []
    system += [m.content for m in call.messages if m.role == "system"]
    messages = tuple(m for m in call.messages if m.role != "system")
    return Prepared(call.model, call.targets, call.region, ProviderRequest(
        model=call.model, messages=messages, system="\n\n".join(system), params=call.params,
        region=call.region, tools=call.tools, tool_choice=call.tool_choice,
        parallel_tool_calls=call.parallel_tool_calls, response_format=call.response_format))


def _first(*values: object) -> object:
    return next((v for v in values if v is not None), None)


def _params(explicit: GenerationParams, bot: BotConfig | None,
            template: PromptTemplate | None) -> GenerationParams:
    return GenerationParams(
        max_output_tokens=_first(explicit.max_output_tokens, bot and bot.max_output_tokens,
                                 template and template.max_output_tokens),  # type: ignore[arg-type]
        temperature=_first(explicit.temperature, bot and bot.temperature,
                           template and template.temperature),  # type: ignore[arg-type]
        top_p=_first(explicit.top_p, bot and bot.top_p),  # type: ignore[arg-type]
        top_k=_first(explicit.top_k, bot and bot.top_k),  # type: ignore[arg-type]
        stop=explicit.stop,
    )


def _bot_targets(bot: BotConfig) -> tuple[Target, ...]:
    """The config's model then its fallbacks. The config's ``region_name`` is a
    preference (tried first, with the provider's failover regions after it), not a pin:
    it travels as the request region; a fallback's own ``region`` pins that fallback."""
    fallbacks = tuple(Target(str(f["provider"]), str(f["model"]), str(f.get("region", "")))
                      for f in bot.metadata.get("fallbacks", []))
    return (Target(bot.provider, bot.model), *fallbacks)


class Presets:
    """Resolves a call's bot and prompt template against the database."""

    def __init__(self, prompts: PromptStore, bots: BotStore, renderer: Renderer) -> None:
        self._prompts = prompts
        self._bots = bots
        self._renderer = renderer

    async def apply(self, call: GenerationCall, prepared: Prepared) -> Prepared:
        """``prepared`` with the bot's and template's settings applied (request wins)."""
        if not call.preset:
            return prepared
        bot = await self._bots.active_config(call.bot) if call.bot else None
        # Names in the call are the tenant's already; the bot's template is named as its
        # author gave it, so it is the same tenant's.
        key, version = (call.caller.tenant.own(bot.prompt_key, "bot.prompt_key"),
                        bot.prompt_version) if bot is not None else ("", 0)
        variables: dict[str, str] = {}
        lenient = False
        if call.prompt is not None:
            # The request's key wins; without one it only supplies the bot prompt's variables.
            if call.prompt.key:
                key, version = call.prompt.key, call.prompt.version
            elif not key:
                raise bad_field("prompt.key", "required (this request names no bot prompt)")
            variables, lenient = dict(call.prompt.variables), call.prompt.lenient
        template = await self._prompts.get(key, version) if key else None

        request = prepared.request
        model, targets, region = prepared.model, prepared.targets, prepared.region
        if not model and not targets:
            if bot is not None:
                targets = _bot_targets(bot)
                region = region or str(bot.metadata.get("region_name", ""))
            elif template is not None and template.model:
                model = template.model
        system, messages = request.system, request.messages
        if template is not None:
            rendered = render(template, self._renderer, variables, strict=not lenient)
            system = "\n\n".join(part for part in (rendered.system, system) if part)
            if rendered.user:
                messages = (*messages, ChatMessage("user", rendered.user))
        if not messages:
            raise bad_field("messages", "at least one message is required (the prompt "
                            "template has no user part)")
        request = replace(request, model=model, region=region, system=system,
                          messages=messages, params=_params(request.params, bot, template))
        return Prepared(model, targets, region, request,
                        prompt_key=template.key if template else "",
                        prompt_version=template.version if template else 0,
                        bot_config_id=bot.config_id if bot else "")
