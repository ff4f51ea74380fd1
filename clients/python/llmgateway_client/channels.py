"""Opening a channel (plaintext or TLS) and the three service stubs that share it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from llmgateway.v1 import billing_pb2_grpc, generation_pb2_grpc, retrieval_pb2_grpc

__all__ = ["ChannelConfig", "Stubs", "TlsOptions", "tls_from"]

ChannelOption = tuple[str, Any]


@dataclass(frozen=True)
class TlsOptions:
    """How a TLS channel checks the server and, for mutual TLS, proves who the client is.

    `root_certificates` (PEM) are the CAs the server's certificate must chain to; None
    trusts the system roots. `certificate_chain` and `private_key` (PEM, together) are the
    client certificate a gateway with mutual TLS asks for. `server_name` is the name the
    server's certificate must carry when it is not the target's host (connecting by IP
    address, or through a proxy or tunnel).
    """

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise ValueError("certificate_chain and private_key go together (the client "
                             "certificate for mutual TLS)")

    @classmethod
    def from_files(
        cls,
        *,
        ca_file: str | Path | None = None,
        cert_file: str | Path | None = None,
        key_file: str | Path | None = None,
        server_name: str | None = None,
    ) -> TlsOptions:
        """Read the PEM files now (a missing file fails here, not at the first call)."""

        def read(path: str | Path | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        return cls(root_certificates=read(ca_file), certificate_chain=read(cert_file),
                   private_key=read(key_file), server_name=server_name)

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(root_certificates=self.root_certificates,
                                            private_key=self.private_key,
                                            certificate_chain=self.certificate_chain)

    def channel_options(self) -> tuple[ChannelOption, ...]:
        if self.server_name is None:
            return ()
        return (("grpc.ssl_target_name_override", self.server_name),)


def tls_from(tls: TlsOptions | None, secure: bool,
             root_certificates: bytes | None) -> TlsOptions | None:
    """The clients' TLS arguments as one value: `tls`, or the older shorthands (`secure`:
    TLS with the system roots; `root_certificates`: TLS with these CAs), or None
    (plaintext, the default)."""
    if tls is not None:
        if root_certificates is not None:
            raise ValueError("give root_certificates inside tls=TlsOptions(...), not both")
        return tls
    if secure or root_certificates is not None:
        return TlsOptions(root_certificates=root_certificates)
    return None


@dataclass(frozen=True)
class ChannelConfig:
    """Where and how to connect; the async and the sync client open their channels from it.
    Plaintext unless `tls` is set."""

    target: str
    tls: TlsOptions | None = None
    options: Sequence[ChannelOption] = ()

    @property
    def secure(self) -> bool:
        return self.tls is not None

    def open_aio(self) -> grpc.aio.Channel:
        if self.tls is not None:
            return grpc.aio.secure_channel(self.target, self.tls.credentials(),
                                           options=(*self.options, *self.tls.channel_options()))
        return grpc.aio.insecure_channel(self.target, options=self.options)

    def open_sync(self) -> grpc.Channel:
        if self.tls is not None:
            return grpc.secure_channel(self.target, self.tls.credentials(),
                                       options=(*self.options, *self.tls.channel_options()))
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
