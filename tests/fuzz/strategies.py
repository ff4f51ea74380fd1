"""Hypothesis strategies for any request message, built from its descriptor.

Strings mix plausible values (known models, roles, this run's wallets) with hostile ones
(NUL, control and astral characters, 5,000-character runs); integers reach the int32/int64
extremes; floats include NaN and ±inf; enums go out of range; Struct values nest and carry
NaN; Timestamps and Durations go far outside their ranges; repeated fields are sometimes
1,100 items long. Names that create rows (wallets, namespaces, prompt keys, bots) always
start with this run's prefix, so the fuzz cannot collide with other tests' data.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

from tests.fuzz.conftest import RUN

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
HOSTILE = ["", "\x00", "a\x00b", " ", "\u202e", "😀" * 3, "\ufeff", "%s%n", "'; DROP TABLE x;--",
           "../../etc/passwd", "{{x}}", "\\", "null"]
# Plausible values by field name, so a fair share of requests get past the first check.
KNOWN: dict[str, list[str]] = {
    "model": ["sim-chat", "sim-fast", "sim-anthropic", "sim-gemini", "sim-bedrock",
              "no-such-model"],
    "role": ["user", "assistant", "system"],
    "provider": ["simulator", "sim-anthropic", "nope"],
    "region": ["us-east-1", "eu-west-1"],
    "currency_code": ["USD", "EUR", "usd"],
    "status": ["active", "disabled"],
    "embedding_model": ["openai/text-embedding-3-small"],
    "transaction_id": ["1", "18446744073709551616", "²", "-1"],
    "config_id": ["1", "99999999999999999999999", "²", "0"],
    "page_token": ["", "abc", "MTIz"],
}
# Fields whose values name rows: always under this run's prefix.
OWNED = {"wallet_id", "namespace", "key", "prompt_key", "slug", "bot", "idempotency_key",
         "session_id", "end_user_id", "id", "document_ids"}


def _text() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=24),
        st.sampled_from(HOSTILE),
        st.integers(4000, 5000).map(lambda n: "x" * n),
        st.text(st.characters(min_codepoint=0, max_codepoint=0x20), max_size=8),
    )


def strings(fd: FieldDescriptor) -> st.SearchStrategy[str]:
    name = fd.name
    if name in OWNED:
        return st.one_of(st.sampled_from([f"{RUN}-a", f"{RUN}-b", ""]),
                         _text().map(lambda s: f"{RUN}-{s}"))
    known = KNOWN.get(name)
    return st.one_of(st.sampled_from(known), _text()) if known else _text()


def _ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from([0, 1, -1, 5, 100, lo, hi]), st.integers(lo, hi))


_FLOATS = st.one_of(st.sampled_from([0.0, 0.5, 1.0, -1.0, float("nan"), float("inf"),
                                     float("-inf")]),
                    st.floats(allow_nan=True, allow_infinity=True, width=32))

_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True), _text()),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(_text(), inner, max_size=3)),
    max_leaves=8)


def _struct(cls: Any) -> st.SearchStrategy[Any]:
    def build(value: dict[str, Any]) -> Any:
        out = cls()
        out.update(value)
        return out
    return st.dictionaries(st.one_of(st.sampled_from(["fallbacks", "a"]), _text()), _json,
                           max_size=4).map(build)


def _seconds_nanos(cls: Any, seconds: st.SearchStrategy[int]) -> st.SearchStrategy[Any]:
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds,
                     st.one_of(st.just(0), _ints(*INT32)))


def scalar(fd: FieldDescriptor, depth: int) -> st.SearchStrategy[Any]:
    t = fd.type
    if t == FieldDescriptor.TYPE_STRING:
        return strings(fd)
    if t == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=32)
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return _FLOATS
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return _ints(*INT64)
    if t == FieldDescriptor.TYPE_ENUM:
        return st.one_of(st.sampled_from([v.number for v in fd.enum_type.values]),
                         st.integers(-3, 40))
    if t == FieldDescriptor.TYPE_MESSAGE:
        return messages(fd.message_type, depth + 1)
    return _ints(*INT32)


def _long(fd: FieldDescriptor) -> st.SearchStrategy[Any]:
    """One small item to repeat 1,100 times (small, so the request stays small)."""
    if fd.message_type is not None:
        return st.just(message_factory.GetMessageClass(fd.message_type)())
    if fd.type == FieldDescriptor.TYPE_STRING:
        return st.sampled_from(["a", "\x00", ""])
    return scalar(fd, 0)


def messages(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[Any]:
    """Any message of ``descriptor``'s type (each field set about half the time)."""
    cls = message_factory.GetMessageClass(descriptor)
    name = descriptor.full_name
    if name == "google.protobuf.Struct":
        return _struct(cls)
    if name == "google.protobuf.Timestamp":
        return _seconds_nanos(cls, st.one_of(_ints(-62_135_596_800, 253_402_300_799),
                                             _ints(*INT64)))
    if name == "google.protobuf.Duration":
        return _seconds_nanos(cls, _ints(*INT64))
    if depth > 3:
        return st.just(cls())

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        message = cls()
        for fd in descriptor.fields:
            if not draw(st.booleans()):
                continue
            target = getattr(message, fd.name) if fd.is_repeated else None
            if fd.is_repeated and fd.message_type is not None and \
                    fd.message_type.GetOptions().map_entry:
                value_fd = fd.message_type.fields_by_name["value"]
                for key in draw(st.lists(strings(fd.message_type.fields_by_name["key"]),
                                         max_size=3)):
                    value = draw(scalar(value_fd, depth))
                    if value_fd.message_type is not None:
                        target[key].CopyFrom(value)
                    else:
                        target[key] = value
            elif fd.is_repeated:
                items = draw(st.one_of(st.lists(scalar(fd, depth), max_size=3),
                                       _long(fd).map(lambda item: [item] * 1100)))
                target.extend(items)
            elif fd.message_type is not None:
                getattr(message, fd.name).CopyFrom(draw(scalar(fd, depth)))
            else:
                setattr(message, fd.name, draw(scalar(fd, depth)))
        return message

    return build()
