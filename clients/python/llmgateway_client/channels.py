"""Opening a channel (plaintext or TLS) and the three service stubs that share it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from llmgateway.v1 import billing_pb2_grpc, generation_pb2_grpc, retrieval_pb2_grpc

__all__ = ["ChannelConfig", "Stubs"]

ChannelOption = tuple[str, Any]


@dataclass(frozen=True)
class ChannelConfig:
    """Where and how to connect; the async and the sync client open their channels from it."""

    target: str
    secure: bool = False
    root_certificates: bytes | None = None
    options: Sequence[ChannelOption] = ()

    def _credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates)

    def open_aio(self) -> grpc.aio.Channel:
        if self.secure:
            return grpc.aio.secure_channel(self.target, self._credentials(), options=self.options)
        return grpc.aio.insecure_channel(self.target, options=self.options)

    def open_sync(self) -> grpc.Channel:
        if self.secure:
            return grpc.secure_channel(self.target, self._credentials(), options=self.options)
        return grpc.insecure_channel(self.target, options=self.options)


@dataclass(frozen=True)
class Stubs:
    """The generated stubs of the three services over one channel (sync or aio)."""

    generation: generation_pb2_grpc.GenerationServiceStub
    retrieval: retrieval_pb2_grpc.RetrievalServiceStub
    billing: billing_pb2_grpc.BillingServiceStub

    @classmethod
    def over(cls, channel: grpc.Channel | grpc.aio.Channel) -> Stubs:
        return cls(
            generation=generation_pb2_grpc.GenerationServiceStub(channel),
            retrieval=retrieval_pb2_grpc.RetrievalServiceStub(channel),
            billing=billing_pb2_grpc.BillingServiceStub(channel),
        )
