"""Raw bytes for every RPC through a generic channel (no serializer): random bytes,
truncated and bit-flipped encodings of real requests, invalid UTF-8 in string fields,
deeply nested groups. Undecodable input is INVALID_ARGUMENT "the request could not be
decoded as <Message>" — never grpc's UNKNOWN with a Python exception in it."""

from __future__ import annotations

import random

import grpc
import pytest
from google.protobuf import message_factory

from tests.fuzz.harness import METADATA, Outcome, Rpc, our_rpcs, send_all, verdict

PER_RPC = 560
SEED = 20261205


def samples(rpc: Rpc, rng: random.Random) -> list[bytes]:
    """A valid-looking seed request and ``PER_RPC`` corruptions of it or of nothing."""
    cls = message_factory.GetMessageClass(rpc.request)
    seed = bytearray()
    for fd in rpc.request.fields:  # field 1..n as length-delimited "abc" where it fits
        if fd.type == fd.TYPE_STRING:
            seed += bytes([(fd.number << 3) | 2, 3]) + b"abc"
    seed_bytes = bytes(seed) or cls().SerializeToString()
    out = []
    for i in range(PER_RPC):
        kind = i % 6
        if kind == 0:
            out.append(rng.randbytes(rng.randint(0, 64)))
        elif kind == 1 and seed_bytes:
            data = bytearray(seed_bytes)
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            out.append(bytes(data))
        elif kind == 2 and seed_bytes:
            out.append(seed_bytes[:rng.randrange(len(seed_bytes))])
        elif kind == 3:  # a string field with invalid UTF-8 / a NUL
            number = rng.randint(1, 12)
            value = rng.choice([b"\xff\xfe", b"\xc3\x28", b"a\x00b", b"\xed\xa0\x80"])
            out.append(bytes([(number << 3) | 2, len(value)]) + value)
        elif kind == 4:  # varints: overlong, 64-bit extremes on every field number
            number = rng.randint(1, 12)
            out.append(bytes([number << 3]) + rng.choice(
                [b"\xff" * 10 + b"\x01", b"\xff" * 9 + b"\x01", b"\x80" * 11]))
        else:  # deep nesting of the first message-typed field, or of an unknown group
            depth = rng.choice([50, 120, 400])
            out.append((b"\x13" * depth) + (b"\x14" * depth) if rng.random() < 0.5 else
                       b"".join(bytes([0x12, 0x7f]) for _ in range(depth)))
    return out


async def test_raw_bytes_never_fail_internally(fuzz_channel, fuzz_gateway):
    rng = random.Random(SEED)
    requests = [(rpc, payload) for rpc in our_rpcs() for payload in samples(rpc, rng)]
    outcome = Outcome()
    await send_all(fuzz_channel, requests, outcome)
    verdict(outcome, "raw-bytes fuzz")
    assert sum(outcome.codes.values()) >= 13_000
    assert fuzz_gateway.metric("llmgw_internal_errors_total") == 0


@pytest.mark.parametrize("rpc", our_rpcs(), ids=lambda rpc: rpc.name)
async def test_undecodable_request_is_invalid_argument(fuzz_channel, rpc):
    make = fuzz_channel.unary_stream if rpc.streaming else fuzz_channel.unary_unary
    call = make(rpc.path, request_serializer=None, response_deserializer=None)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        result = call(b"\x0a\x05ab", metadata=METADATA, timeout=10)  # truncated field
        if rpc.streaming:
            async for _ in result:
                pass
        else:
            await result
    error = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details() == f"the request could not be decoded as {rpc.request.name}"
