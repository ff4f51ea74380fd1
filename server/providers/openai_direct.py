"""Chat Completions over HTTP directly: one long-lived aiohttp session per provider.

Why: under load a third or more of the gateway's CPU per unary call went to the ``openai``
SDK's per-call layering — request options, header merging, its httpx-on-aiohttp shim,
auth-retry wrappers — although the adapter already skipped its pydantic models. The wire
protocol is small and documented: POST a JSON body to ``{base_url}/chat/completions``
with a bearer key; a unary answer is one JSON object; a stream is server-sent events
(``data: {chunk}`` lines, blank-line separated, ending ``data: [DONE]``). This module
speaks exactly that and nothing more; what the bodies mean stays in ``openai.py``, shared
with the SDK transport (``transport: sdk``), so both send identical bodies and read
answers with the same code (``tests/providers/test_openai_transports.py`` checks it).

Streams are read one network read at a time: every event that arrived in one read is
passed on together (``DirectEvents`` yields a list per read), so a burst of tokens becomes one
gRPC message instead of one per token. With a batch window (``stream_batch_ms``), reads
after the first are spaced at least that far apart: tokens that arrive in between wait in
the socket buffer and leave as one message. Relaying costs per message (parse, gRPC write,
two event-loop wake-ups), not per token, so at 5 ms between tokens a 20 ms window relays
about four tokens for the price of one. Pacing starts once text has come in two reads at
least a millisecond apart (a vendor trickling tokens): the first token is never held, an
answer sent in one burst is not held at all, no token waits longer than the window, and
what has already arrived by the time of the next read is read at once. A trickling
stream's end (finish reason, usage) can come up to one window after its last token.

The proxy (``HTTP(S)_PROXY`` / ``NO_PROXY``, as the SDK's client honours them) is read
from the environment once, when the session is made — as httpx does — not per call: with
``trust_env`` aiohttp re-read the environment and ``~/.netrc`` on two executor threads for
every request, a fifth of the gateway's CPU per unary call at 0 ms upstream.

Timeouts follow the SDK's meaning: ``timeout_s`` bounds each read (not the whole
stream) and connecting, including the wait for a pooled connection, is bounded by
min(5 s, timeout_s).
"""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Mapping
from typing import Any

import aiohttp
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

_DATA = b"data:"
_DONE = b"[DONE]"
# Text reads closer together than this are one burst, not a trickle: not paced.
TRICKLE_GAP_S = 0.001


class VendorStatus(Exception):
    """An error status from the vendor, with its parsed JSON body (or None) and headers."""

    def __init__(self, status: int, body: Any, headers: Mapping[str, str] | None) -> None:
        super().__init__(f"vendor status {status}")
        self.status = status
        self.body = body
        self.headers = headers


class StreamFailed(Exception):
    """The vendor reported an error inside a stream (an ``error`` event or object)."""


class DirectChat:
    """POST /chat/completions for one provider (base URL, key, pool size)."""

    def __init__(self, base_url: str, api_key: str, *, max_connections: int,
                 stream_batch_s: float = 0.0) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._batch_s = stream_batch_s
        self._headers = {"Authorization": f"Bearer {api_key}",
                         "Content-Type": "application/json", "Accept": "application/json"}
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        """The session, made on first use inside the running loop (where it belongs)."""
        if self._session is None:
            proxy, proxy_auth = env_proxy(self._url)
            with warnings.catch_warnings():  # proxy_auth: deprecated for v4, fine in v3
                warnings.simplefilter("ignore", DeprecationWarning)
                self._session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=self._max_connections),
                    headers=self._headers, auto_decompress=True,
                    proxy=proxy, proxy_auth=proxy_auth)
        return self._session

    async def _post(self, body: dict[str, Any], timeout_s: float) -> aiohttp.ClientResponse:
        timeout = aiohttp.ClientTimeout(total=None, connect=min(5.0, timeout_s),
                                        sock_read=timeout_s)
        data = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        response = await self._client().post(self._url, data=data, timeout=timeout)
        if response.status >= 400:
            try:
                text = await response.read()
            finally:
                response.release()
            raise VendorStatus(response.status, _json_or_none(text), response.headers)
        return response

    async def complete(self, body: dict[str, Any], timeout_s: float) -> Any:
        """A unary call's parsed JSON answer (ValueError when it does not parse)."""
        response = await self._post(body, timeout_s)
        try:
            return json.loads(await response.read())
        finally:
            response.release()

    async def stream(self, body: dict[str, Any], timeout_s: float) -> DirectEvents:
        """An open stream; its reads yield the events of each network read."""
        return DirectEvents(await self._post(body, timeout_s), self._batch_s)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def env_proxy(url: str) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The environment's proxy for ``url`` and its credentials (from the proxy URL or
    ``~/.netrc``), resolved as aiohttp's ``trust_env`` resolves them per request; (None,
    None) when no proxy is set or ``NO_PROXY`` exempts the host."""
    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


class DirectEvents:
    """An ``Upstream`` over one SSE response: each item is the list of JSON events that
    one network read completed (at least one). With ``batch_s`` > 0 a read follows the
    previous one that brought text by at least ``batch_s`` (see the module docstring);
    the wait is a cancellable sleep, so a caller leaving still closes the stream at once.
    ``close`` drops the connection at once (a caller that left must not keep the vendor
    generating)."""

    __slots__ = ("_batch_s", "_chunks", "_consumed", "_paced", "_pending", "_response",
                 "_text_at")

    def __init__(self, response: aiohttp.ClientResponse, batch_s: float = 0.0) -> None:
        self._response = response
        self._chunks = response.content.iter_any()
        self._pending = b""
        self._batch_s = batch_s
        self._consumed = 0  # body bytes read so far (``total_bytes``: bytes received)
        self._text_at = 0.0  # loop time of the last read that brought text
        self._paced = False  # whether the next read waits for the window from _text_at

    def __aiter__(self) -> DirectEvents:
        return self

    async def __anext__(self) -> list[Any]:
        if self._paced and self._response.content.total_bytes == self._consumed:
            # Nothing has arrived since the last read: wait out the window, not reading.
            # Had something arrived (a burst, or a slow consumer), it is read at once.
            wait = self._text_at + self._batch_s - asyncio.get_running_loop().time()
            if wait > 0:
                self._hold(True)
                try:
                    await asyncio.sleep(wait)
                finally:
                    self._hold(False)
        while True:
            chunk = await self._chunks.__anext__()  # StopAsyncIteration: the body ended
            self._consumed += len(chunk)
            events = self._feed(chunk)
            if events:
                if self._batch_s:
                    self._paced = self._pace_after(any(map(_has_text, events)))
                return events

    def _pace_after(self, text: bool) -> bool:
        """Whether the next read waits for the window. Only after a read that brought
        text, at least ``TRICKLE_GAP_S`` after the previous text: the opening role chunk
        must not delay the first token, the finish, usage and [DONE] events not the end,
        and a vendor sending its answer in a burst is not trickling — holding the burst's
        last piece would only delay its end."""
        if not text:
            return False
        now = asyncio.get_running_loop().time()
        previous, self._text_at = self._text_at, now
        return bool(previous) and now - previous >= TRICKLE_GAP_S

    def _hold(self, hold: bool) -> None:
        """Stop (or restart) reading the socket for the window. Sleeping alone would still
        wake the event loop and aiohttp's parser for every packet the vendor sends; held,
        the packets wait in the kernel's buffer and arrive as one read. The transport is
        paused, not aiohttp's protocol: pausing the protocol also pauses its parser,
        which then kept a parsed event back for one more window."""
        connection = self._response.connection
        transport = connection.transport if connection is not None else None
        if transport is None or transport.is_closing():
            return
        if hold:
            transport.pause_reading()
        else:
            transport.resume_reading()

    def _feed(self, chunk: bytes) -> list[Any]:
        data = self._pending + chunk
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        blocks = data.split(b"\n\n")
        self._pending = blocks.pop()  # an event not yet ended by a blank line
        events = []
        for block in blocks:
            event = read_event(block)
            if event is not None:
                events.append(event)
        return events

    async def close(self) -> None:
        self._response.close()


def _has_text(event: Any) -> bool:
    """Whether a chunk carries answer text or a tool-call piece (a few lookups: run for
    every event of a batched stream)."""
    try:
        delta = event["choices"][0]["delta"]
        return bool(delta.get("content") or delta.get("tool_calls"))
    except (KeyError, IndexError, TypeError, AttributeError):
        return False


def read_event(block: bytes) -> Any:
    """One SSE event's JSON (its ``data:`` lines joined), or None for a comment, a
    keep-alive or ``[DONE]``. An error event raises ``StreamFailed``."""
    data = []
    failed = False
    for line in block.split(b"\n"):
        if line.startswith(_DATA):
            data.append(line[5:].lstrip(b" "))
        elif line.startswith(b"event:") and line[6:].strip() == b"error":
            failed = True
    if not data:
        if failed:
            raise StreamFailed("the vendor stream reported an error")
        return None
    payload = b"\n".join(data)
    if payload == _DONE:
        return None
    value = json.loads(payload)
    if failed or (type(value) is dict and value.get("error")):
        raise StreamFailed("the vendor stream reported an error")
    return value


def _json_or_none(text: bytes) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


__all__ = ["DirectChat", "DirectEvents", "StreamFailed", "VendorStatus", "read_event"]
