"""The event-stream encoder, checked against botocore's own decoder (checksums included)."""

from __future__ import annotations

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer

from simulator.eventstream import encode_message, event_message, exception_message


def decode(data: bytes) -> list[tuple[dict[str, object], bytes]]:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(message.headers, message.payload) for message in buffer]


def test_messages_round_trip_through_botocore() -> None:
    data = event_message(
        "contentBlockDelta", b'{"delta":{"text":"h\xc3\xa9"}}'
    ) + exception_message("throttlingException", b'{"message":"slow down"}')

    (event_headers, event_payload), (exc_headers, exc_payload) = decode(data)

    assert event_headers == {
        ":event-type": "contentBlockDelta",
        ":content-type": "application/json",
        ":message-type": "event",
    }
    assert event_payload == '{"delta":{"text":"hé"}}'.encode()
    assert exc_headers[":message-type"] == "exception"
    assert exc_headers[":exception-type"] == "throttlingException"
    assert exc_payload == b'{"message":"slow down"}'


def test_a_message_split_across_reads_is_reassembled() -> None:
    data = encode_message({":message-type": "event", ":event-type": "messageStop"}, b"{}")
    buffer = EventStreamBuffer()

    buffer.add_data(data[:7])
    assert list(buffer) == []
    buffer.add_data(data[7:])

    assert [m.headers[":event-type"] for m in buffer] == ["messageStop"]


def test_corrupted_payload_fails_the_message_checksum() -> None:
    data = bytearray(event_message("messageStart", b'{"role":"assistant"}'))
    data[-6] ^= 0xFF  # a payload byte; the trailing 4 bytes are the message CRC

    with pytest.raises(ChecksumMismatch):
        decode(bytes(data))
