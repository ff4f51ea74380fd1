"""Checks for the values of a scripted scenario (JSON from the control API or a file).

Scenarios are typed by hand or by tests in other languages, so every value is checked
and a bad one is reported by field name (`ScenarioError`) instead of failing some call
later with a confusing vendor response.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from typing import Any


class ScenarioError(ValueError):
    """A scenario (from the control API or a file) is malformed; the message says why."""


def reject_unknown(data: Mapping[str, Any], allowed: Collection[str], label: str) -> None:
    """Unknown keys are errors, so a typo (`drop_after_token`) does not pass silently.

    The message is `label: names`, e.g. `unknown behaviour field(s): colour`.
    """
    unknown = set(data) - set(allowed)
    if unknown:
        raise ScenarioError(f"{label}: {', '.join(sorted(unknown))}")


def non_negative_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ScenarioError(f"{name} must be a number")
    if value < 0:
        raise ScenarioError(f"{name} must be >= 0")
    return float(value)


def non_negative_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScenarioError(f"{name} must be an integer >= 0")
    return value


def http_status(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise ScenarioError(f"{name} must be an HTTP error status (400-599)")
    return value


def boolean(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(f"{name} must be true or false")
    return value


def optional_string(value: Any, name: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ScenarioError(f"{name} must be a string")
    return value


def one_of(value: Any, choices: Collection[str], name: str) -> str:
    if value not in choices:
        quoted = " or ".join(f"'{c}'" for c in choices)
        raise ScenarioError(f"{name} must be {quoted}")
    return str(value)
