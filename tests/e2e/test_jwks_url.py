"""Signing keys that rotate: a real gateway verifying tokens with keys it fetches from a
JWKS URL (a local HTTP server the test controls), without a restart.

Intervals are shortened to fractions of a second; each test starts its own gateway so the
refresh timers start from a known point.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from tests.auth_jwks.jwks_server import JwksEndpoint, jwks_endpoint, signed
from tests.e2e.test_bad_input import details
from tests.support.gateway import RunningGateway, raw_test_config, running_gateway, token

OK = ("OK", "")


@pytest.fixture(scope="module")
def key_a() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key_b() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def start(simulator, pg_url, data_dir: Path):
    """`async with start(endpoint, jwks_refresh_s=…) as gateway`: a gateway on that JWKS."""

    @contextlib.asynccontextmanager
    async def started(endpoint: JwksEndpoint, **auth: Any) -> AsyncIterator[RunningGateway]:
        settings = {"jwks_url": endpoint.url, "jwks_refresh_s": 60, "jwks_min_refresh_s": 0.2,
                    "jwks_timeout_s": 0.5, **auth}
        raw = raw_test_config(simulator.base_url, data_dir, auth=settings)
        async with running_gateway(raw, pg_url) as gateway:
            yield gateway

    return started


async def call(gateway: RunningGateway, jwt: str) -> tuple[str, str]:
    """(status code name, ErrorInfo reason) of one authenticated ListModels."""
    async with grpc.aio.insecure_channel(gateway.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        try:
            await stub.ListModels(pb.ListModelsRequest(),
                                  metadata=(("authorization", f"Bearer {jwt}"),), timeout=5)
            return OK
        except grpc.aio.AioRpcError as error:
            return error.code().name, details(error)[0].reason


async def eventually(gateway: RunningGateway, jwt: str, within_s: float) -> tuple[str, str]:
    """Poll `call` until OK or `within_s` passed; the last answer."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        answer = await call(gateway, jwt)
        if answer == OK or asyncio.get_running_loop().time() > deadline:
            return answer
        await asyncio.sleep(0.05)


def unknown_key() -> tuple[str, str]:
    return ("UNAUTHENTICATED", "UNKNOWN_KEY")


async def test_a_key_published_after_start_is_accepted_on_first_use(start, key_a, key_b):
    async with jwks_endpoint(a=key_a) as endpoint, start(endpoint) as gateway:
        assert await call(gateway, signed("a", key_a)) == OK
        assert await call(gateway, token("generate")) == OK  # the static HS256 secret too
        assert endpoint.requests == 1  # fetched once, at start

        endpoint.publish(a=key_a, b=key_b)
        await asyncio.sleep(0.25)  # past jwks_min_refresh_s since the start-up fetch
        assert await call(gateway, signed("b", key_b)) == OK  # on demand, no restart
        assert endpoint.requests == 2


async def test_the_background_refresh_picks_up_a_new_key_within_the_interval(start, key_a,
                                                                             key_b):
    # On-demand fetches are ruled out (60 s rate limit): only the 0.3 s interval can do it.
    async with jwks_endpoint(a=key_a) as endpoint, \
            start(endpoint, jwks_refresh_s=0.3, jwks_min_refresh_s=60) as gateway:
        endpoint.publish(a=key_a, b=key_b)
        assert await eventually(gateway, signed("b", key_b), within_s=1.5) == OK
        assert endpoint.requests >= 2


async def test_a_removed_key_stops_working_after_the_next_refresh(start, key_a, key_b):
    async with jwks_endpoint(a=key_a, b=key_b) as endpoint, \
            start(endpoint, jwks_refresh_s=0.3, jwks_min_refresh_s=60) as gateway:
        retired = signed("b", key_b)
        assert await call(gateway, retired) == OK  # and now in the verified-token cache

        endpoint.publish(a=key_a)
        await asyncio.sleep(0.8)
        assert await call(gateway, retired) == unknown_key()
        assert await call(gateway, signed("a", key_a)) == OK


async def test_fetched_keys_keep_working_while_the_endpoint_is_down(start, key_a):
    async with jwks_endpoint(a=key_a) as endpoint, \
            start(endpoint, jwks_refresh_s=0.3) as gateway:
        endpoint.status = 503
        await asyncio.sleep(0.5)  # background fetches fail meanwhile
        assert await call(gateway, signed("a", key_a)) == OK
        assert await call(gateway, signed("rotated", key_a)) == unknown_key()  # not INTERNAL

        endpoint.publish(a=key_a)
        endpoint.delay_s = 1.5  # answers, but long past jwks_timeout_s (0.5 s)
        await asyncio.sleep(0.25)
        loop = asyncio.get_running_loop()
        began = loop.time()
        assert await call(gateway, signed("rotated", key_a)) == unknown_key()
        assert loop.time() - began < 1.2  # the fetch timeout bounds the caller's wait
        assert await call(gateway, signed("a", key_a)) == OK

        await endpoint.close()  # connection refused from now on
        await asyncio.sleep(0.5)
        assert await call(gateway, signed("a", key_a)) == OK
        assert await call(gateway, signed("rotated", key_a)) == unknown_key()


GARBAGE = {
    "html": b"<html>502 Bad Gateway</html>",
    "not a set": b'{"keys": "none"}',
    "empty set": b'{"keys": []}',
    "symmetric key": b'{"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"}]}',
    "oversized": b" " * (1024 * 1024 + 1),
}


async def test_a_garbage_document_keeps_the_keys_in_force(start, key_a):
    async with jwks_endpoint(a=key_a) as endpoint, start(endpoint) as gateway:
        for fetches, (name, garbage) in enumerate(GARBAGE.items(), start=2):
            endpoint.body = garbage
            await asyncio.sleep(0.22)  # past jwks_min_refresh_s (0.2 s)
            assert await call(gateway, signed("new", key_a)) == unknown_key(), name
            assert endpoint.requests == fetches, name  # the garbage was fetched ...
            assert await call(gateway, signed("a", key_a)) == OK, name  # ... and ignored


async def test_unknown_kids_cannot_make_the_gateway_hammer_the_endpoint(start, key_a):
    async with jwks_endpoint(a=key_a) as endpoint, \
            start(endpoint, jwks_min_refresh_s=1.0) as gateway:
        await asyncio.sleep(1.05)
        endpoint.delay_s = 0.2  # callers arriving during the fetch share it
        fetched_before = endpoint.requests

        async def random_kid() -> tuple[str, str]:
            return await call(gateway, signed(secrets.token_hex(8), key_a))

        answers = await asyncio.gather(*(random_kid() for _ in range(30)))
        answers += [await random_kid() for _ in range(20)]

        assert set(answers) == {unknown_key()}
        assert endpoint.requests - fetched_before == 1
        await asyncio.sleep(1.0)
        assert await random_kid() == unknown_key()
        assert endpoint.requests - fetched_before == 2  # limited, not switched off


async def test_a_gateway_with_only_a_jwks_url_starts_while_it_is_down(start, key_a):
    async with jwks_endpoint() as endpoint:
        endpoint.status = 503
        async with start(endpoint, hs256_secret_env=None, jwks_refresh_s=0.3) as gateway:
            assert await call(gateway, token("generate")) == unknown_key()  # no static keys
            endpoint.publish(a=key_a)
            assert await eventually(gateway, signed("a", key_a), within_s=1.5) == OK
