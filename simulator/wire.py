"""Transport helpers every vendor protocol module shares (aiohttp side, no vendor shapes).

Kept apart from `scenario` (which knows nothing of HTTP) and from the vendor modules
(which should hold only their vendor's translation).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, NoReturn

from aiohttp import web

from simulator.scenario import CallScope

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
    return web.Response(
        status=status, body=dumps(body), content_type=JSON_CONTENT_TYPE, headers=headers
    )
