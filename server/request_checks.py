"""Generic request checks: every request of our four services, before its handler runs.

Handlers validate what their fields *mean* (a known model, a positive amount). This module
checks what no field of this API may ever carry, whatever the RPC, by walking the decoded
message along its descriptor: strings with NUL bytes (Postgres refuses them) or longer than
the field's maximum, repeated fields with too many items, Timestamps and Durations outside
the range protobuf defines, non-finite floats (in float fields and in Struct/Value numbers),
enum numbers the proto does not define. Every violation names the proto field path
(``messages[0].content``, ``metadata[key]``) and all of them come back at once as one
INVALID_ARGUMENT, so a caller never meets a database error or a stack trace for bad input.

Cost: a plan (which fields need which check) is built once per message type; a check is
one loop over ``ListFields()`` per (sub)message, so unset fields cost nothing. Walking a
Struct costs ~2.5 µs per entry (a tool's JSON Schema: ~120 µs), and callers send the
same schemas call after call, so a Struct found clean is remembered by a digest of its
bytes (a bounded LRU: a caller controls what is kept, never how much) and not walked
again.

Limits (characters; override per field in ``STRING_LIMITS`` / ``REPEATED_LIMITS``):
- any string: 4 KiB (ids, names, keys, descriptions: the domain checks are stricter);
- content fields (message content and parts, system instruction, document text, prompt
  template text, retrieval query, prompt variable values, Struct string values): 16 MiB,
  i.e. larger than any request the transport accepts — their real limits are the domain's
  (prompt bytes, document bytes), which report them with their own words;
- repeated fields: 1,024 items; messages 4,096; embedding vectors 65,536;
  Struct fields and list values 10,000 each, nested at most 32 deep.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from server.kernel.errors import Fault, FieldViolation, GatewayError, invalid_argument

DEFAULT_STRING = 4 * 1024
CONTENT = 16 * 1024 * 1024
DEFAULT_REPEATED = 1024
STRUCT_ITEMS = 10_000
MAX_DEPTH = 32
CLEAN_STRUCTS = 4096  # Struct digests remembered as clean (16 bytes each)
MAX_VIOLATIONS = 20  # enough to fix a request; a huge list helps nobody
ECHO_CHARS = 64

# Per-field overrides, keyed by the field's full proto name.
STRING_LIMITS: dict[str, int] = {
    "llmgateway.v1.Message.content": CONTENT,
    "llmgateway.v1.ContentPart.text": CONTENT,
    "llmgateway.v1.GenerateRequest.system_instruction": CONTENT,
    "llmgateway.v1.StreamGenerateRequest.system_instruction": CONTENT,
    "llmgateway.v1.PromptOptions.VariablesEntry.value": CONTENT,
    "llmgateway.v1.RenderPromptRequest.VariablesEntry.value": CONTENT,
    "llmgateway.v1.Document.text": CONTENT,
    "llmgateway.v1.RetrieveRequest.query": CONTENT,
    "llmgateway.v1.PromptTemplate.system": CONTENT,
    "llmgateway.v1.PromptTemplate.user": CONTENT,
    "google.protobuf.Value.string_value": CONTENT,
}
REPEATED_LIMITS: dict[str, int] = {
    "llmgateway.v1.GenerateRequest.messages": 4096,
    "llmgateway.v1.StreamGenerateRequest.messages": 4096,
    "llmgateway.v1.RetrieveRequest.vector": 65_536,
}

# Timestamp: 0001-01-01T00:00:00Z .. 9999-12-31T23:59:59.999999999Z (google/protobuf docs).
_TS_MIN, _TS_MAX = -62_135_596_800, 253_402_300_799
_DURATION_MAX_S = 315_576_000_000  # ±10,000 years
_NANOS_MAX = 999_999_999

_STRUCT = "google.protobuf.Struct"
_VALUE = "google.protobuf.Value"
_LIST = "google.protobuf.ListValue"
_TIMESTAMP = "google.protobuf.Timestamp"
_DURATION = "google.protobuf.Duration"


def shown(value: str, limit: int = ECHO_CHARS) -> str:
    """A caller's value as it may appear in an error: escaped, at most ``limit`` chars."""
    text = value if value.isprintable() else repr(value)[1:-1]
    return text if len(text) <= limit else text[:limit] + "…"


class _Violations(list[FieldViolation]):
    def add(self, path: str, description: str) -> None:
        if len(self) < MAX_VIOLATIONS:
            self.append(FieldViolation(path, description))

    @property
    def full(self) -> bool:
        return len(self) >= MAX_VIOLATIONS


def _string(value: str, path: str, limit: int, out: _Violations, what: str = "") -> None:
    if "\x00" in value:
        out.add(path, f"{what}must not contain NUL characters")
    if len(value) > limit:
        out.add(path, f"{what}at most {limit} characters")


@dataclass
class _Plan:
    """For one message type: the check for each field number that needs one."""

    checks: dict[int, Callable[[Any, str, _Violations, int], None]] = field(default_factory=dict)


class RequestChecker:
    """Checks decoded requests; plans are built lazily, once per message type."""

    def __init__(self, string_limits: dict[str, int] | None = None,
                 repeated_limits: dict[str, int] | None = None) -> None:
        self._strings = {**STRING_LIMITS, **(string_limits or {})}
        self._repeated = {**REPEATED_LIMITS, **(repeated_limits or {})}
        self._plans: dict[str, _Plan] = {}
        self._clean_structs: OrderedDict[bytes, None] = OrderedDict()

    def violations(self, message: Any) -> list[FieldViolation]:
        out = _Violations()
        self._message(message, "", out, 0)
        return list(out)

    def check(self, message: Any) -> None:
        """Raise INVALID_ARGUMENT naming every bad field of ``message``."""
        bad = self.violations(message)
        if bad:
            raise invalid_argument(bad)

    # -- walking --------------------------------------------------------------------

    def _message(self, message: Any, prefix: str, out: _Violations, depth: int) -> None:
        name = message.DESCRIPTOR.full_name
        if name == _STRUCT:
            self._struct(message, prefix.rstrip("."), out, depth)
            return
        if name in _SPECIAL:
            _SPECIAL[name](message, prefix.rstrip("."), out, depth)
            return
        plan = self._plans.get(name) or self._plan(message.DESCRIPTOR)
        checks = plan.checks
        if not checks:
            return
        for fd, value in message.ListFields():
            check = checks.get(fd.number)
            if check is not None:
                check(value, prefix + fd.name, out, depth)
                if out.full:
                    return

    def _struct(self, message: Any, path: str, out: _Violations, depth: int) -> None:
        """``_struct``, skipped for a Struct (at this depth) already found clean."""
        key = hashlib.blake2b(message.SerializeToString(deterministic=True), digest_size=16,
                              salt=depth.to_bytes(2, "little")).digest()
        if key in self._clean_structs:
            self._clean_structs.move_to_end(key)
            return
        before = len(out)
        _struct(message, path, out, depth)
        if len(out) == before:
            self._clean_structs[key] = None
            if len(self._clean_structs) > CLEAN_STRUCTS:
                self._clean_structs.popitem(last=False)

    def _plan(self, descriptor: Descriptor) -> _Plan:
        plan = _Plan()
        self._plans[descriptor.full_name] = plan  # before recursing: recursive types
        for fd in descriptor.fields:
            check = self._field_check(fd)
            if check is not None:
                plan.checks[fd.number] = check
        return plan

    def _field_check(self, fd: FieldDescriptor) -> Callable[[Any, str, _Violations, int], None] | None:
        single = self._single_check(fd)
        if not fd.is_repeated:
            return single
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            return self._map_check(fd)
        limit = self._repeated.get(fd.full_name, DEFAULT_REPEATED)
        if fd.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            def floats(values: Any, path: str, out: _Violations, depth: int) -> None:
                if len(values) > limit:
                    out.add(path, f"at most {limit} items")
                if not all(map(math.isfinite, values)):
                    out.add(path, "every number must be finite (no NaN or infinity)")
            return floats

        def repeated(values: Any, path: str, out: _Violations, depth: int) -> None:
            if len(values) > limit:
                out.add(path, f"at most {limit} items")
                return
            if single is not None:
                for i, item in enumerate(values):
                    single(item, f"{path}[{i}]", out, depth)
                    if out.full:
                        return
        return repeated

    def _single_check(self, fd: FieldDescriptor) -> Callable[[Any, str, _Violations, int], None] | None:
        if fd.type == FieldDescriptor.TYPE_STRING:
            limit = self._strings.get(fd.full_name, DEFAULT_STRING)
            return lambda value, path, out, depth: _string(value, path, limit, out)
        if fd.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            def finite(value: float, path: str, out: _Violations, depth: int) -> None:
                if not math.isfinite(value):
                    out.add(path, "must be a finite number")
            return finite
        if fd.type == FieldDescriptor.TYPE_ENUM:
            known = frozenset(v.number for v in fd.enum_type.values)
            enum_name = fd.enum_type.name

            def enum(value: int, path: str, out: _Violations, depth: int) -> None:
                if value not in known:
                    out.add(path, f"{value} is not a {enum_name} value")
            return enum
        if fd.type == FieldDescriptor.TYPE_MESSAGE:
            def nested(value: Any, path: str, out: _Violations, depth: int) -> None:
                if depth >= MAX_DEPTH:
                    out.add(path, f"nested more than {MAX_DEPTH} levels deep")
                    return
                self._message(value, path + ".", out, depth + 1)
            return nested
        return None  # ints and bools: the domain checks their ranges

    def _map_check(self, fd: FieldDescriptor) -> Callable[[Any, str, _Violations, int], None]:
        entry = fd.message_type
        key_fd, value_fd = entry.fields_by_name["key"], entry.fields_by_name["value"]
        key_limit = self._strings.get(key_fd.full_name, DEFAULT_STRING)
        key_is_string = key_fd.type == FieldDescriptor.TYPE_STRING
        value_check = self._single_check(value_fd)
        limit = self._repeated.get(fd.full_name, DEFAULT_REPEATED)

        def mapping(values: Any, path: str, out: _Violations, depth: int) -> None:
            if len(values) > limit:
                out.add(path, f"at most {limit} entries")
                return
            for key, value in values.items():
                item = f"{path}[{shown(str(key))}]"
                if key_is_string:
                    _string(key, item, key_limit, out, "the key: ")
                if value_check is not None:
                    value_check(value, item, out, depth)
                if out.full:
                    return
        return mapping


# -- well-known types -----------------------------------------------------------------

def _timestamp(message: Any, path: str, out: _Violations, depth: int) -> None:
    if not _TS_MIN <= message.seconds <= _TS_MAX:
        out.add(path, "must be between 0001-01-01 and 9999-12-31")
    if not 0 <= message.nanos <= _NANOS_MAX:
        out.add(path, f"nanos must be between 0 and {_NANOS_MAX}")


def _duration(message: Any, path: str, out: _Violations, depth: int) -> None:
    seconds, nanos = message.seconds, message.nanos
    if not -_DURATION_MAX_S <= seconds <= _DURATION_MAX_S:
        out.add(path, "must be within ±10,000 years")
    if not -_NANOS_MAX <= nanos <= _NANOS_MAX or (seconds > 0 > nanos) or (seconds < 0 < nanos):
        out.add(path, "nanos must be within ±999,999,999 with the sign of seconds")


def _struct(message: Any, path: str, out: _Violations, depth: int) -> None:
    fields = message.fields
    if len(fields) > STRUCT_ITEMS:
        out.add(path, f"at most {STRUCT_ITEMS} fields")
        return
    for key, value in fields.items():
        item = f"{path}[{shown(key)}]"
        _string(key, item, DEFAULT_STRING, out, "the key: ")
        _value(value, item, out, depth + 1)
        if out.full:
            return


def _list(message: Any, path: str, out: _Violations, depth: int) -> None:
    _items(message.values, path, out, depth)


def _items(values: Iterable[Any], path: str, out: _Violations, depth: int) -> None:
    items = list(values)
    if len(items) > STRUCT_ITEMS:
        out.add(path, f"at most {STRUCT_ITEMS} items")
        return
    for i, value in enumerate(items):
        _value(value, f"{path}[{i}]", out, depth + 1)
        if out.full:
            return


def _value(message: Any, path: str, out: _Violations, depth: int) -> None:
    if depth > MAX_DEPTH:
        out.add(path, f"nested more than {MAX_DEPTH} levels deep")
        return
    kind = message.WhichOneof("kind")
    if kind == "number_value":
        if not math.isfinite(message.number_value):
            out.add(path, "must be a finite number (JSON has no NaN or infinity)")
    elif kind == "string_value":
        _string(message.string_value, path, CONTENT, out)
    elif kind == "struct_value":
        _struct(message.struct_value, path, out, depth)
    elif kind == "list_value":
        _items(message.list_value.values, path, out, depth)


_SPECIAL: dict[str, Callable[[Any, str, _Violations, int], None]] = {
    _TIMESTAMP: _timestamp, _DURATION: _duration, _STRUCT: _struct, _VALUE: _value,
    _LIST: _list,
}


# -- undecodable requests ---------------------------------------------------------------

@dataclass(frozen=True)
class Undecodable:
    """What a safe deserializer returns for bytes that are not the request message."""

    message_name: str


def safe_deserializer(message_class: Any) -> Callable[[bytes], Any]:
    """``message_class.FromString`` that never raises: grpc reports an exception raised
    while deserializing as UNKNOWN with the exception's text, so a bad payload becomes an
    ``Undecodable`` marker that the wrapped behaviour turns into INVALID_ARGUMENT."""
    parse = message_class.FromString
    marker = Undecodable(message_class.DESCRIPTOR.name)

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception:  # noqa: BLE001 - DecodeError, RecursionError …: any would be UNKNOWN
            return marker

    return deserialize


def undecodable_error(marker: Undecodable) -> GatewayError:
    return GatewayError(Fault.INVALID_INPUT, "INVALID_ARGUMENT",
                        f"the request could not be decoded as {marker.message_name}")
