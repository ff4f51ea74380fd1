"""JWT service authentication and per-RPC scopes.

Every RPC but health and reflection needs ``authorization: Bearer <jwt>`` (or ``jwt
<jwt>``) carrying the RPC's scope. A method missing from ``METHOD_SCOPES`` is refused,
so a new RPC is never public by accident.

Verification is synchronous (keys in memory, verified tokens cached). Only a token signed
with a key we do not know awaits anything: ``on_unknown_key`` (the JWKS refresher, when a
JWKS URL is configured) fetches the key set if its rate limit allows, then the token is
verified once more; still unknown, it is UNAUTHENTICATED ``UNKNOWN_KEY``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import grpc

from server.auth.tokens import AuthError, Principal, parse_authorization, require_scope
from server.interceptors.wrapping import WrappingInterceptor, wrap_before
from server.kernel.call_context import current_call
from server.kernel.errors import Fault, GatewayError

_GEN = "/llmgateway.v1.GenerationService/"
_RAG = "/llmgateway.v1.RetrievalService/"
_BILL = "/llmgateway.v1.BillingService/"
_CONF = "/llmgateway.v1.ConfigService/"

PLATFORM_SCOPE = "platform:admin"
ACTING_TENANT_HEADER = "x-llmgw-tenant"  # platform:admin only: act within this tenant

METHOD_SCOPES: dict[str, str] = {
    _GEN + "Generate": "generate",
    _GEN + "StreamGenerate": "generate",
    _GEN + "ListModels": "generate",
    _GEN + "Embed": "generate",
    _RAG + "Retrieve": "retrieve",
    _RAG + "IngestDocuments": "ingest",
    _RAG + "DeleteDocuments": "ingest",
    _BILL + "Charge": "billing:charge",
    _BILL + "GetBalance": "billing:read",
    _BILL + "ListTransactions": "billing:read",
    _BILL + "CreateWallet": "billing:admin",
    _BILL + "CreditWallet": "billing:admin",
    _BILL + "Refund": "billing:admin",
    _BILL + "SetBudget": "billing:admin",
    _BILL + "ListBudgets": "billing:read",
    "/llmgateway.v1.AuditService/ListAuditEvents": "audit:read",
    **{_CONF + m: "generate" for m in ("GetPrompt", "ListPrompts", "RenderPrompt", "ListBots",
                                       "ListBotConfigs")},
    **{_CONF + m: "admin" for m in ("CreatePromptVersion", "ActivatePrompt", "CreateBot",
                                    "CreateBotConfig", "ActivateBotConfig")},
}


def _to_gateway_error(error: AuthError) -> GatewayError:
    code = Fault.UNAUTHENTICATED if error.kind == "unauthenticated" else Fault.FORBIDDEN
    metadata = {"scope": error.missing_scope} if error.missing_scope else {}
    return GatewayError(code, error.reason, error.message, metadata=metadata)


class Verifier(Protocol):
    """A `TokenVerifier`, or a `RotatingVerifier` whose keys change while we run."""

    def verify(self, token: str) -> Principal: ...


class AuthInterceptor(WrappingInterceptor):
    """Verify the caller's JWT and the RPC's scope before the handler runs."""

    def __init__(self, verifier: Verifier, *,
                 on_unknown_key: Callable[[], Awaitable[None]] | None = None) -> None:
        self._verifier = verifier
        self._on_unknown_key = on_unknown_key
        super().__init__()

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        scope = METHOD_SCOPES.get(method)
        verifier = self._verifier
        on_unknown_key = self._on_unknown_key

        async def authenticate(_request: Any, context: grpc.aio.ServicerContext) -> None:
            header = None
            acting = None
            for key, value in context.invocation_metadata() or ():
                if key == "authorization" and header is None:
                    header = value
                elif key == ACTING_TENANT_HEADER:
                    acting = value
            try:
                token = parse_authorization(header)
                try:
                    principal = verifier.verify(token)
                except AuthError as error:
                    if error.reason != "UNKNOWN_KEY" or on_unknown_key is None:
                        raise
                    await on_unknown_key()
                    principal = verifier.verify(token)
                if scope is None:
                    raise GatewayError(Fault.FORBIDDEN, "MISSING_SCOPE",
                                       f"{method} is not open to any scope")
                require_scope(principal, scope)
            except AuthError as error:
                raise _to_gateway_error(error) from None
            if acting is not None and PLATFORM_SCOPE not in principal.scopes:
                # Never implied by `admin`: a tenant's admin stays within its tenant.
                raise GatewayError(Fault.FORBIDDEN, "MISSING_SCOPE",
                                   f"{ACTING_TENANT_HEADER} needs the {PLATFORM_SCOPE!r} scope",
                                   metadata={"scope": PLATFORM_SCOPE})
            call = current_call.get()
            if call is not None:
                call.principal = principal
                call.acting_tenant = acting

        return wrap_before(handler, authenticate)
