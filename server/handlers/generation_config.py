"""Apply bots and prompt templates to a Generate request ("configuration over code").

Precedence, most specific first: what the request says explicitly (model, targets,
parameters, prompt), then the bot's active configuration, then the template's defaults.
The result is an ordinary parsed request plus the ids that make the output traceable
(prompt key + version, bot config id).
"""

from __future__ import annotations

from dataclasses import replace

from server.bots.store import BotConfig, BotStore
from server.errors import bad_field
from server.fallback.chain import Target
from server.handlers.generation_requests import GenerationRequest, ParsedRequest
from server.prompts.render import Renderer
from server.prompts.store import PromptStore
from server.prompts.templates import PromptTemplate, render
from server.providers.base import ChatMessage, GenerationParams


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


class RequestConfigurator:
    """Resolves `bot` and `prompt` sections against the database."""

    def __init__(self, prompts: PromptStore, bots: BotStore, renderer: Renderer) -> None:
        self._prompts = prompts
        self._bots = bots
        self._renderer = renderer

    async def apply(self, request: GenerationRequest, parsed: ParsedRequest) -> ParsedRequest:
        """``parsed`` with the bot's and template's settings applied (request wins)."""
        if not request.bot and not request.HasField("prompt"):
            return parsed
        bot = await self._bots.active_config(request.bot) if request.bot else None
        key, version = (bot.prompt_key, bot.prompt_version) if bot is not None else ("", 0)
        variables: dict[str, str] = {}
        lenient = False
        if request.HasField("prompt"):
            # The request's key wins; without one it only supplies the bot prompt's variables.
            if request.prompt.key:
                key, version = request.prompt.key, request.prompt.version
            elif not key:
                raise bad_field("prompt.key", "required (this request names no bot prompt)")
            if request.prompt.version < 0:
                raise bad_field("prompt.version", "must not be negative")
            variables, lenient = dict(request.prompt.variables), request.prompt.lenient
        template = await self._prompts.get(key, version) if key else None

        provider_request = parsed.provider_request
        model, targets, region = parsed.model, parsed.targets, parsed.region
        if not model and not targets:
            if bot is not None:
                targets = _bot_targets(bot)
                region = region or str(bot.metadata.get("region_name", ""))
            elif template is not None and template.model:
                model = template.model
        system, messages = provider_request.system, provider_request.messages
        if template is not None:
            rendered = render(template, self._renderer, variables, strict=not lenient)
            system = "\n\n".join(part for part in (rendered.system, system) if part)
            if rendered.user:
                messages = (*messages, ChatMessage("user", rendered.user))
        provider_request = replace(provider_request, system=system, messages=messages,
                                   params=_params(provider_request.params, bot, template))
        if not provider_request.messages:
            raise bad_field("messages", "at least one message is required (the prompt "
                            "template has no user part)")
        return replace(parsed, model=model, targets=targets, region=region,
                       provider_request=provider_request,
                       prompt_key=template.key if template else "",
                       prompt_version=template.version if template else 0,
                       bot_config_id=bot.config_id if bot else "")
