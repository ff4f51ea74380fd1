"""Retrieval fixtures: an authorised stub to the shared test gateway, fresh namespaces."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import grpc
import pytest
from llmgateway.v1 import retrieval_pb2_grpc

from tests.support.gateway import bearer

RAG_AUTH = bearer("retrieve", "ingest", "generate")


@pytest.fixture
def retrieval(channel: grpc.aio.Channel) -> retrieval_pb2_grpc.RetrievalServiceStub:
    return retrieval_pb2_grpc.RetrievalServiceStub(channel)


@pytest.fixture
def new_namespace() -> Callable[[], str]:
    """A fresh namespace name per call: tests never see each other's documents."""
    return lambda: f"test-{uuid.uuid4().hex[:12]}"
