"""JWT service auth through the real server: accepted and rejected tokens, scopes, and the
public health/reflection services."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from tests.e2e.test_bad_input import details
from tests.support.gateway import (
    AUDIENCE,
    ISSUER,
    TEST_SECRET,
    RunningGateway,
    raw_test_config,
    running_gateway,
)

REQUEST = pb.ListModelsRequest()


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[rsa.RSAPrivateKey, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    folder = tmp_path_factory.mktemp("keys")
    pem = folder / "svc-key-1.pem"
    pem.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, pem


@pytest.fixture(scope="module")
async def rs_gateway(simulator, pg_url, data_dir, rsa_key) -> AsyncIterator[RunningGateway]:
    raw = raw_test_config(simulator.base_url, data_dir,
                          auth={"public_key_files": [str(rsa_key[1])]})
    async with running_gateway(raw, pg_url) as gw:
        yield gw


def claims(**over: object) -> dict[str, object]:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": AUDIENCE, "sub": "svc", "scope": "generate", "iat": now,
            "nbf": now, "exp": now + 300}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def hs(**over: object) -> str:
    return jwt.encode(claims(**over), TEST_SECRET, algorithm="HS256")


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def call(gateway: RunningGateway, authorization: str | None) -> grpc.StatusCode:
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        metadata = (("authorization", authorization),) if authorization is not None else ()
        try:
            await stub.ListModels(REQUEST, metadata=metadata, timeout=5)
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as error:
            return error.code()


async def test_valid_hs256_and_rs256_tokens_are_accepted(rs_gateway, rsa_key):
    rs_token = jwt.encode(claims(), rsa_key[0], algorithm="RS256", headers={"kid": "svc-key-1"})
    assert await call(rs_gateway, f"Bearer {hs()}") == grpc.StatusCode.OK
    assert await call(rs_gateway, f"Bearer {rs_token}") == grpc.StatusCode.OK
    assert await call(rs_gateway, f"jwt {hs()}") == grpc.StatusCode.OK


async def test_rejected_tokens(rs_gateway, rsa_key):
    private, pem = rsa_key
    now = int(time.time())
    none_token = f"{b64(json.dumps({'alg': 'none', 'typ': 'JWT'}).encode())}." \
                 f"{b64(json.dumps(claims()).encode())}."
    # Key confusion: an HS256 token whose HMAC secret is the RSA public key's PEM.
    signing_input = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode())}." \
                    f"{b64(json.dumps(claims()).encode())}"
    mac = hmac.new(pem.read_bytes(), signing_input.encode(), hashlib.sha256).digest()
    confused = f"{signing_input}.{b64(mac)}"
    cases = {
        "expired": hs(exp=now - 600, iat=now - 900, nbf=now - 900),
        "not yet valid": hs(nbf=now + 600),
        "wrong audience": hs(aud="someone-else"),
        "wrong issuer": hs(iss="evil"),
        "alg none": none_token,
        "hs signed with rs public key": confused,
        "unknown kid": jwt.encode(claims(), private, algorithm="RS256", headers={"kid": "other"}),
        "wrong secret": jwt.encode(claims(), "x" * 40, algorithm="HS256"),
        "no subject": hs(sub=None),
        "garbage": "not-a-jwt",
    }
    for name, token in cases.items():
        assert await call(rs_gateway, f"Bearer {token}") == grpc.StatusCode.UNAUTHENTICATED, name
    assert await call(rs_gateway, None) == grpc.StatusCode.UNAUTHENTICATED
    assert await call(rs_gateway, "Basic dXNlcjpwYXNz") == grpc.StatusCode.UNAUTHENTICATED


async def test_missing_scope_is_permission_denied_with_the_scope_named(gateway):
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListModels(REQUEST, metadata=(("authorization", f"Bearer {hs(scope='retrieve')}"),),
                                  timeout=5)
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    info, _ = details(caught.value)
    assert info.reason == "MISSING_SCOPE" and info.metadata["scope"] == "generate"


async def test_expired_token_reason_is_stable_and_secret_free(gateway):
    expired = hs(exp=int(time.time()) - 600, iat=int(time.time()) - 900,
                 nbf=int(time.time()) - 900)
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListModels(REQUEST, metadata=(("authorization", f"Bearer {expired}"),),
                                  timeout=5)
    assert details(caught.value)[0].reason == "TOKEN_EXPIRED"
    assert expired not in caught.value.details() and TEST_SECRET not in caught.value.details()
    assert "x-trace-id" in dict(caught.value.trailing_metadata())


async def test_health_needs_no_token(gateway):
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING
