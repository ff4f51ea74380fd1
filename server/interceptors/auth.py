"""JWT service authentication and per-RPC scopes.

Every RPC but health and reflection needs ``authorization: Bearer <jwt>`` (or ``jwt
<jwt>``) carrying the RPC's scope. A method missing from ``METHOD_SCOPES`` is refused,
so a new RPC is never public by accident.
"""

from __future__ import annotations

from typing import Any

import grpc

from server.auth.tokens import AuthError, TokenVerifier, parse_authorization
from server.interceptors.wrapping import WrappingInterceptor, wrap_before
from server.kernel.call_context import current_call
from server.kernel.errors import Fault, GatewayError

_GEN = "/llmgateway.v1.GenerationService/"
_RAG = "/llmgateway.v1.RetrievalService/"
_BILL = "/llmgateway.v1.BillingService/"
_CONF = "/llmgateway.v1.ConfigService/"

METHOD_SCOPES: dict[str, str] = {
    _GEN + "Generate": "generate",
    _GEN + "StreamGenerate": "generate",
    _GEN + "ListModels": "generate",
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
    **{_CONF + m: "generate" for m in ("GetPrompt", "ListPrompts", "RenderPrompt", "ListBots",
                                       "ListBotConfigs")},
    **{_CONF + m: "admin" for m in ("CreatePromptVersion", "ActivatePrompt", "CreateBot",
                                    "CreateBotConfig", "ActivateBotConfig")},
}


def _to_gateway_error(error: AuthError) -> GatewayError:
    code = Fault.UNAUTHENTICATED if error.kind == "unauthenticated" else Fault.FORBIDDEN
    metadata = {"scope": error.missing_scope} if error.missing_scope else {}
    return GatewayError(code, error.reason, error.message, metadata=metadata)


class AuthInterceptor(WrappingInterceptor):
    """Verify the caller's JWT and the RPC's scope before the handler runs."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self._verifier = verifier
        super().__init__()

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        scope = METHOD_SCOPES.get(method)
        verifier = self._verifier

        async def authenticate(_request: Any, context: grpc.aio.ServicerContext) -> None:
            header = None
            for key, value in context.invocation_metadata() or ():
                if key == "authorization":
                    header = value
                    break
            try:
                principal = verifier.verify(parse_authorization(header))
                if scope is None:
                    raise GatewayError(Fault.FORBIDDEN, "MISSING_SCOPE",
                                       f"{method} is not open to any scope")
                verifier.require_scope(principal, scope)
            except AuthError as error:
                raise _to_gateway_error(error) from None
            call = current_call.get()
            if call is not None:
                call.principal = principal

        return wrap_before(handler, authenticate)
