"""Encoder for the AWS event-stream binary framing (`application/vnd.amazon.eventstream`).

Bedrock's streaming APIs answer with a sequence of these messages; botocore decodes
them and checks both checksums, so the framing must be exact:

    prelude   total length (uint32 BE) | headers length (uint32 BE) | CRC32 of those 8 bytes
    headers   repeated: name length (uint8) | name | value type (uint8) | value
    payload   raw bytes (JSON for Bedrock events)
    trailer   CRC32 (uint32 BE) of everything before it

Only string-valued headers (type 7: uint16 BE length + UTF-8 bytes) are produced, which is
all Bedrock's event, exception and error messages use.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping

_PRELUDE = struct.Struct(">II")
_CRC = struct.Struct(">I")
_STRING_TYPE = 7
_MAX_HEADER_NAME = 255
_MAX_STRING_VALUE = 0xFFFF


def encode_headers(headers: Mapping[str, str]) -> bytes:
    """Header block with every value typed as a string."""
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        if len(raw_name) > _MAX_HEADER_NAME or len(raw_value) > _MAX_STRING_VALUE:
            raise ValueError(f"event-stream header {name!r} too long")
        out += bytes((len(raw_name),)) + raw_name
        out += bytes((_STRING_TYPE,)) + struct.pack(">H", len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: Mapping[str, str], payload: bytes) -> bytes:
    """One complete event-stream message (prelude, headers, payload, checksums)."""
    header_block = encode_headers(headers)
    total = _PRELUDE.size + _CRC.size + len(header_block) + len(payload) + _CRC.size
    prelude = _PRELUDE.pack(total, len(header_block))
    head = prelude + _CRC.pack(zlib.crc32(prelude))
    body = head + header_block + payload
    return body + _CRC.pack(zlib.crc32(body))


def event_message(event_type: str, payload: bytes) -> bytes:
    """An `event` message: the union member name in `:event-type`, JSON payload."""
    return encode_message(
        {
            ":event-type": event_type,
            ":content-type": "application/json",
            ":message-type": "event",
        },
        payload,
    )


def exception_message(exception_type: str, payload: bytes) -> bytes:
    """A modelled `exception` message; `exception_type` is the stream union's member name
    (e.g. `throttlingException`), which botocore reports as the error code."""
    return encode_message(
        {
            ":exception-type": exception_type,
            ":content-type": "application/json",
            ":message-type": "exception",
        },
        payload,
    )
