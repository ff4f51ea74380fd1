"""A JWKS endpoint the test controls: an aiohttp server on 127.0.0.1 in the test's loop.

The test publishes keys, takes the endpoint down (503), makes it answer garbage or hang,
and counts the GETs it received — which is how rate limits and single-flight fetches are
observed from the outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.support.gateway import AUDIENCE, ISSUER

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def public_jwk(kid: str, key: PrivateKey) -> dict[str, object]:
    """The public JWK of a private key, as an identity provider publishes it."""
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        return {**jwk, "kid": kid, "use": "sig", "alg": "RS256"}
    jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig", "alg": "ES256"}


def signed(kid: str, key: PrivateKey, *, scope: str = "generate", ttl_s: int = 300) -> str:
    """A token for the test gateway's issuer and audience, signed by `key`, naming `kid`."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "jwks-svc", "scope": scope,
              "iat": now, "nbf": now, "exp": now + ttl_s}
    algorithm = "RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256"
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


@dataclass
class JwksEndpoint:
    """What the endpoint serves now; tests assign to these fields between calls."""

    keys: dict[str, PrivateKey] = field(default_factory=dict)
    body: bytes | None = None  # served verbatim instead of `keys` (garbage documents)
    status: int = 200
    delay_s: float = 0.0
    chunked: bool = False  # no content-length: the size bound must hold while reading
    requests: int = 0
    url: str = ""
    runner: web.AppRunner | None = None

    async def close(self) -> None:
        """Stop listening: fetches get "connection refused" from now on."""
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()

    def publish(self, **keys: PrivateKey) -> None:
        """Serve exactly these keys (kid=key), as a valid JWK Set."""
        self.keys, self.body, self.status, self.delay_s, self.chunked = \
            dict(keys), None, 200, 0.0, False

    def document(self) -> bytes:
        if self.body is not None:
            return self.body
        return json.dumps({"keys": [public_jwk(kid, key) for kid, key in self.keys.items()]}
                          ).encode()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        if not self.chunked:
            return web.Response(body=self.document(), content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        document = self.document()
        for start in range(0, len(document), 1024):
            await response.write(document[start:start + 1024])
        await response.write_eof()
        return response


@contextlib.asynccontextmanager
async def jwks_endpoint(**keys: PrivateKey) -> AsyncIterator[JwksEndpoint]:
    """Serve `keys` at http://127.0.0.1:<port>/.well-known/jwks.json until the block ends."""
    endpoint = JwksEndpoint()
    endpoint.publish(**keys)
    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", endpoint.handle)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    endpoint.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    endpoint.runner = runner
    try:
        yield endpoint
    finally:
        await endpoint.close()
