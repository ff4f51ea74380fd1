"""Transport helpers every vendor protocol module shares (aiohttp side, no vendor shapes).

Kept apart from the vendor-neutral modules (`scenario`, `faults` …, which know nothing
of HTTP) and from the vendor modules (which should hold only their vendor's translation).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any, NoReturn

from aiohttp import web

from simulator.faults import Ending, ReplyScript, cut_json
from simulator.scenario_book import ScriptedError
from simulator.stats import CallScope

JSON_CONTENT_TYPE = "application/json"
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return _ENCODE(obj).encode()


def new_id(prefix: str = "") -> str:
    return prefix + os.urandom(12).hex()


def seconds_header(value: float) -> str:
    """A delay as HTTP headers write it: whole seconds as an integer, else a decimal."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def connection_lost(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def abort_connection(request: web.BaseRequest, scope: CallScope) -> NoReturn:
    """Cut the TCP connection (a scripted drop) and end the handler quietly.

    Raising CancelledError is how aiohttp itself ends handlers whose connection is gone:
    it skips writing a response and logs nothing.
    """
    scope.dropping()
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise asyncio.CancelledError


async def read_json(request: web.BaseRequest) -> Any:
    """The request body as JSON; raises ValueError when it is not JSON."""
    return json.loads(await request.read())


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """`body` as JSON; bytes are taken as already-encoded JSON."""
    raw = body if isinstance(body, bytes) else dumps(body)
    return web.Response(status=status, body=raw, content_type=JSON_CONTENT_TYPE, headers=headers)


def end_unary(
    request: web.BaseRequest,
    scope: CallScope,
    script: ReplyScript,
    body: Any,
    *,
    late_error: Callable[[ScriptedError], web.Response],
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Answer a unary call as its fault script says (see `simulator.faults`).

    The JSON `body` (bytes or an object); a late error in the vendor's shape
    (`late_error`); a cut connection; or the body cut mid-JSON, still with status 200
    and a Content-Length that matches the cut body, so only parsing it fails.
    """
    if script.ending is Ending.FAILED and script.error_status is not None:
        return scope.responded(late_error(ScriptedError(script.error_status)))
    if script.ending is Ending.DROPPED:
        abort_connection(request, scope)
    raw = body if isinstance(body, bytes) else dumps(body)
    if script.ending is Ending.TRUNCATED:
        raw = cut_json(raw)
        scope.truncated()
    return scope.responded(json_response(raw, headers=headers))


async def end_stream_early(
    request: web.BaseRequest,
    response: web.StreamResponse,
    scope: CallScope,
    script: ReplyScript,
    error_event: Callable[[int], bytes] | None = None,
) -> web.StreamResponse:
    """End a stream whose script is not `COMPLETE`, after its text chunks were sent.

    DROPPED cuts the connection (so does FAILED for a vendor without an in-stream error
    shape); FAILED writes the vendor's in-stream error (`error_event(status)`);
    TRUNCATED writes nothing more. The last two then end the body properly (the final
    empty chunk of chunked encoding), so the client sees a clean end of stream —
    without the vendor's terminal event.
    """
    if script.ending is Ending.TRUNCATED:
        scope.truncated()
    elif script.ending is Ending.FAILED and error_event and script.error_status is not None:
        await response.write(error_event(script.error_status))
    else:
        abort_connection(request, scope)
    await response.write_eof()
    return response
