"""Counters of what the simulator was asked and did, and the per-call bookkeeping.

Tests read these (through `/_sim/stats`) to prove what the gateway did upstream: how
many calls reached which model and region, which statuses were answered, whether a
stream was completed, cut or truncated on purpose, or abandoned by the client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar


@dataclass(slots=True)
class SimStats:
    """Counters that tests read to prove what the gateway did upstream.

    `in_flight` is a live gauge and survives `reset()`, otherwise calls that are still
    running when a test resets would drive it negative.
    """

    requests: int = 0
    requests_by_model: dict[str, int] = field(default_factory=dict)
    requests_by_vendor: dict[str, int] = field(default_factory=dict)
    requests_by_region: dict[str, int] = field(default_factory=dict)
    requests_by_region_model: dict[str, int] = field(default_factory=dict)
    responses_by_status: dict[str, int] = field(default_factory=dict)
    streams_started: int = 0
    streams_completed: int = 0
    client_disconnects: int = 0
    connections_dropped: int = 0
    responses_truncated: int = 0
    in_flight: int = 0

    def reset(self) -> None:
        self.requests = self.streams_started = self.streams_completed = 0
        self.client_disconnects = self.connections_dropped = self.responses_truncated = 0
        self.requests_by_model = {}
        self.requests_by_vendor = {}
        self.requests_by_region = {}
        self.requests_by_region_model = {}
        self.responses_by_status = {}

    def snapshot(self) -> dict[str, Any]:
        return asdict(self)


class _HasStatus(Protocol):
    @property
    def status(self) -> int: ...


_R = TypeVar("_R", bound=_HasStatus)


class CallScope:
    """Bookkeeping for one vendor API call from arrival to its end.

    Used as a context manager around the handler body. A cancellation or connection
    error while the connection is gone counts as a client disconnect — unless the
    simulator itself dropped the connection on purpose (`drop_after_tokens`).
    """

    __slots__ = ("_connection_lost", "_dropping", "_stats")

    def __init__(
        self, stats: SimStats, connection_lost: Callable[[], bool], vendor: str | None = None
    ) -> None:
        self._stats = stats
        self._connection_lost = connection_lost
        self._dropping = False
        if vendor is not None:
            _bump(stats.requests_by_vendor, vendor)

    def __enter__(self) -> Self:
        self._stats.requests += 1
        self._stats.in_flight += 1
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stats.in_flight -= 1
        if exc_type is None or self._dropping:
            return
        gone = issubclass(exc_type, asyncio.CancelledError | ConnectionError)
        if gone and self._connection_lost():
            self._stats.client_disconnects += 1

    def model(self, name: str, region: str | None = None) -> None:
        """Attribute the call to a model (and region) once the request has named it.

        `requests_by_region_model` is keyed `region/model`, so a test can tell which
        region of a multi-region vendor served a given model.
        """
        _bump(self._stats.requests_by_model, name)
        if region is not None:
            _bump(self._stats.requests_by_region, region)
            _bump(self._stats.requests_by_region_model, f"{region}/{name}")

    def responded(self, response: _R) -> _R:
        """Count the status of the response being returned (or started) and pass it on."""
        _bump(self._stats.responses_by_status, str(response.status))
        return response

    def stream_started(self) -> None:
        self._stats.streams_started += 1

    def stream_completed(self) -> None:
        self._stats.streams_completed += 1

    def truncated(self) -> None:
        """Count a reply ended cleanly but incomplete on purpose (see `simulator.faults`)."""
        self._stats.responses_truncated += 1

    def dropping(self) -> None:
        """Mark the coming connection loss as scripted, not the client's doing."""
        self._dropping = True
        self._stats.connections_dropped += 1


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1
