"""``GenerationCall``: everything one Generate / StreamGenerate request asks for, as
domain values.

The handler builds it from the protobuf request together with who is calling and the
call's trace id (passed in explicitly: nothing below the handler reads the ambient call
context), and ``validation.call_violations`` checks all of it before any I/O. The use
case then never looks at the wire request again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from server.auth.tokens import Principal
from server.billing.metering import BillingRequest
from server.fallback.chain import Target
from server.kernel.tenancy import Tenant
from server.providers.base import ChatMessage, GenerationParams
from server.providers.content import ResponseFormat, Tool, ToolChoice
from server.rag.search_options import SearchOptions


@dataclass(frozen=True)
class PromptSelection:
    """Which template renders the prompt (key "" means the bot's), and its variables."""

    key: str = ""
    version: int = 0  # 0: the active version
    variables: Mapping[str, str] = field(default_factory=dict)
    lenient: bool = False


@dataclass(frozen=True)
class RetrievalRequest:
    """Ground the answer in a namespace; the query is the last user message."""

    search: SearchOptions
    max_context_tokens: int = 0  # 0: the configured default


@dataclass(frozen=True)
class Caller:
    """Who is calling (the verified principal, if auth is on) and the call's trace id."""

    principal: Principal | None = None
    trace_id: str = ""
    tenant: Tenant = Tenant()

    @property
    def subject(self) -> str:
        return self.principal.subject if self.principal else "anonymous"

    @property
    def scope(self) -> str:
        """Whose idempotency keys the call's billing uses: the service, in its tenant."""
        return self.tenant.scope(self.subject)


@dataclass(frozen=True)
class GenerationCall:
    """One generation request. ``messages`` are as sent (system-role ones included, in
    order); ``system_instruction`` is the request's own system text."""

    method: str  # "Generate" | "StreamGenerate": usage records say which
    messages: tuple[ChatMessage, ...] = ()
    system_instruction: str = ""
    params: GenerationParams = GenerationParams()
    model: str = ""
    targets: tuple[Target, ...] = ()
    region: str = ""
    bot: str = ""
    prompt: PromptSelection | None = None
    retrieval: RetrievalRequest | None = None
    billing: BillingRequest | None = None
    end_user_id: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    caller: Caller = Caller()
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None

    @property
    def preset(self) -> bool:
        """A bot or a template shapes the request (and may supply its messages)."""
        return bool(self.bot) or self.prompt is not None
