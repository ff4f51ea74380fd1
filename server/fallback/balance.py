"""Weighted load-balancing between equivalent targets (e.g. the same model at two vendors).

Why an order and not one pick: the drawn target serves the request, and the others remain
its fallbacks. Drawing without replacement, each next position proportional to the
remaining weights, makes the first position follow the weights exactly (70/30 → 70 % of
requests go first to the 70-weight target). Zero-weight targets are never drawn first;
they keep their configured order at the end (standby).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def weighted_order(items: Sequence[T], weights: Sequence[int],
                   rng: Callable[[], float]) -> list[T]:
    """``items`` reordered by weighted draws without replacement."""
    pool = [(item, weight) for item, weight in zip(items, weights, strict=True) if weight > 0]
    standby = [item for item, weight in zip(items, weights, strict=True) if weight <= 0]
    out: list[T] = []
    while pool:
        total = sum(weight for _, weight in pool)
        point = rng() * total
        for i, (item, weight) in enumerate(pool):
            point -= weight
            if point < 0 or i == len(pool) - 1:
                out.append(item)
                del pool[i]
                break
    return out + standby
