"""Python client for llm-gateway: typed async and sync clients plus JWT minting.

from llmgateway_client import GatewayClient, TokenMinter

minter = TokenMinter(secret, subject="billing-service", scopes=["generate"])
async with GatewayClient("127.0.0.1:50051", token_source=minter) as client:
    result = await client.generate("sim-chat", "Say hello")
    print(result.text, result.served_by, result.usage, result.trace_id)

Over TLS (mutual, with a client certificate):

tls = TlsOptions.from_files(ca_file="ca.pem", cert_file="client.pem", key_file="client-key.pem")
async with GatewayClient("gateway.internal:50051", token_source=minter, tls=tls) as client:
    ...

Tools: declare them, run the calls the model makes, and send the results back:

weather = Tool("get_weather", "Weather in a city", {"type": "object", ...})
result = await client.generate("sim-chat", messages, tools=[weather])
if result.finish_reason == "tool_calls":
    messages.append(result.as_message())
    for call in result.tool_calls:
        messages.append(tool_result(call.id, run(call.name, call.parse_arguments())))
    result = await client.generate("sim-chat", messages, tools=[weather])
"""

from .auth import StaticToken, TokenMinter, TokenSource
from .channels import TlsOptions
from .client import GatewayClient
from .errors import (
    Aborted,
    AlreadyExists,
    BudgetExceeded,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    GatewayError,
    InsufficientFunds,
    InternalError,
    InvalidArgument,
    InvalidOutput,
    NotFound,
    PermissionDenied,
    RateLimited,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    UnsupportedCapability,
)
from .retry import Backoff
from .sync import Gateway, SyncGatewayClient
from .types import (
    Attempt,
    Billing,
    ChargeResult,
    ChargeSummary,
    ChatMessage,
    Citation,
    CreditResult,
    DeleteResult,
    Document,
    DocumentResult,
    EmbedResult,
    GenerateResult,
    Image,
    IngestResult,
    ModelInfo,
    ModelList,
    PromptRef,
    PromptTemplate,
    RefundResult,
    ResponseFormat,
    RetrievalConfig,
    RetrievedChunk,
    RetrieveResult,
    StreamEvent,
    StreamFinished,
    StreamStarted,
    Target,
    TextChunk,
    Tool,
    ToolCall,
    ToolCallChunk,
    Transaction,
    TransactionList,
    Usage,
    UsageAmount,
    Wallet,
    tool_result,
)

__version__ = "0.1.0"

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Attempt",
    "Backoff",
    "Billing",
    "BudgetExceeded",
    "Cancelled",
    "ChargeResult",
    "ChargeSummary",
    "ChatMessage",
    "Citation",
    "CreditResult",
    "DeadlineExceeded",
    "DeleteResult",
    "Document",
    "DocumentResult",
    "EmbedResult",
    "FailedPrecondition",
    "Gateway",
    "GatewayClient",
    "GatewayError",
    "GenerateResult",
    "Image",
    "IngestResult",
    "InsufficientFunds",
    "InternalError",
    "InvalidArgument",
    "InvalidOutput",
    "ModelInfo",
    "ModelList",
    "NotFound",
    "PermissionDenied",
    "PromptRef",
    "PromptTemplate",
    "RateLimited",
    "RefundResult",
    "ResourceExhausted",
    "ResponseFormat",
    "RetrievalConfig",
    "RetrieveResult",
    "RetrievedChunk",
    "StaticToken",
    "StreamEvent",
    "StreamFinished",
    "StreamStarted",
    "SyncGatewayClient",
    "Target",
    "TextChunk",
    "TlsOptions",
    "TokenMinter",
    "TokenSource",
    "Tool",
    "ToolCall",
    "ToolCallChunk",
    "Transaction",
    "TransactionList",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "UnsupportedCapability",
    "Usage",
    "UsageAmount",
    "Wallet",
    "__version__",
    "tool_result",
]
