"""Region chains: a target at a regional vendor (Bedrock) becomes one target per region.

Why: a whole AWS region can be down or throttled while the same model answers elsewhere.
Trying the model's other regions before leaving the provider keeps the answer on the
model that was asked for. Each region is a separate ``Target``, so it gets its own
circuit breaker and its own line in the attempt list.

Order: the caller's preferred region, then the target's configured region, then the
provider's default region, then the provider's failover regions; duplicates dropped. A
target with ``pin_region`` never leaves its region.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RegionPolicy:
    """A provider's regions: where it runs by default and where it may fail over."""

    default: str = ""
    failover: tuple[str, ...] = ()

    @property
    def regional(self) -> bool:
        return bool(self.default or self.failover)


def region_chain(policy: RegionPolicy, target_region: str = "", preferred: str = "",
                 pinned: bool = False) -> list[str]:
    """The regions to try for one target, best first (``[""]`` when the vendor has none)."""
    if pinned and target_region:
        return [target_region]
    ordered: list[str] = []
    for region in (preferred, target_region, policy.default, *policy.failover):
        if region and region not in ordered:
            ordered.append(region)
    return ordered or [""]
