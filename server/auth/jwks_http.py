"""Fetch a JWKS document over HTTP(S): async, bounded in time and in size.

The identity provider's endpoint is outside our control, so a fetch must never hang the
gateway nor let a misbehaving server make us buffer without end: one deadline covers
connecting, the answer and the whole body, and the body is cut off past `max_bytes`
(read raw, with compression refused, so the bound is on bytes actually held). Parsing and
validating the document is not this module's job (`server.auth.keys.parse_jwks`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from typing import Final
from urllib.parse import urlsplit

logger = logging.getLogger(__name__)

MAX_JWKS_BYTES: Final = 1024 * 1024
"""Real key sets are a few KiB; 1 MiB leaves room for hundreds of keys."""


class JwksFetchError(Exception):
    """The document could not be fetched; the message is safe to log (no body content)."""


class HttpJwksFetcher:
    """`await fetcher()` returns the body of one GET of `url`, or raises JwksFetchError.

    A fresh connection per fetch: fetches are minutes apart, so a pool would only hold
    idle sockets (and would need closing). Redirects are followed (identity providers
    move their key sets behind CDNs); proxies come from the usual environment variables.
    """

    def __init__(self, url: str, timeout_s: float, max_bytes: int = MAX_JWKS_BYTES) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the JWKS URL must be an absolute http(s) URL")
        if timeout_s <= 0 or max_bytes <= 0:
            raise ValueError("timeout_s and max_bytes must be positive")
        self._url = url
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self.origin = redacted(url)
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            logger.warning("the JWKS URL %s is plain http: anyone on the path could substitute "
                           "signing keys; use https", self.origin)

    async def __call__(self) -> bytes:
        # Imported here: httpx pulls rich, click and pygments (its command line), ~4 MB
        # resident that a gateway without `auth.jwks_url` never needs. The first fetch
        # happens in `Gateway.start`, so no request pays the import.
        import httpx

        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._get()
        except TimeoutError:
            raise JwksFetchError(f"no complete answer within {self._timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise JwksFetchError(f"{type(exc).__name__}: {exc}") from None

    async def _get(self) -> bytes:
        import httpx

        headers = {"accept": "application/jwk-set+json, application/json",
                   "accept-encoding": "identity"}
        async with (
            httpx.AsyncClient(timeout=self._timeout_s, follow_redirects=True,
                              max_redirects=5) as client,
            client.stream("GET", self._url, headers=headers) as response,
        ):
            if response.status_code != 200:
                raise JwksFetchError(f"HTTP {response.status_code}")
            encoding = response.headers.get("content-encoding", "identity").lower()
            if encoding != "identity":
                raise JwksFetchError(f"unrequested content-encoding {encoding!r}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._max_bytes:
                raise JwksFetchError(f"document larger than {self._max_bytes} bytes")
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) > self._max_bytes:
                    raise JwksFetchError(f"document larger than {self._max_bytes} bytes")
            return bytes(body)


def redacted(url: str) -> str:
    """The URL for logs: scheme, host, port and path — no credentials, no query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
