"""Render prompt templates: ``{{variable}}`` placeholders and structured (YAML) prompts.

Substitution is one pass over the *template*: a value is inserted literally and never
scanned again, so a user-supplied value containing ``{{secret}}`` cannot pull in another
variable (no template injection). Strict by default: a placeholder without a value is an
error naming it, because a prompt silently missing its context is worse than a failure.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import yaml

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*\}\}")


class MissingVariables(Exception):
    """Placeholders without values (strict mode)."""

    def __init__(self, names: list[str]) -> None:
        super().__init__(", ".join(names))
        self.names = names


def placeholders(text: str) -> list[str]:
    """The variable names a template text uses, in order of first use."""
    seen: dict[str, None] = {}
    for match in PLACEHOLDER.finditer(text):
        seen.setdefault(match.group(1))
    return list(seen)


def substitute(text: str, values: Mapping[str, str], *, strict: bool = True) -> str:
    """Fill ``{{name}}`` from ``values`` in one pass (values are never re-expanded)."""
    missing = [name for name in placeholders(text) if name not in values]
    if missing and strict:
        raise MissingVariables(missing)
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), ""), text)


def system_variables(now: datetime) -> dict[str, str]:
    """Variables every template may use, computed at render time in the configured zone."""
    return {
        "current_date": now.strftime("%Y-%m-%d"),
        "current_time": now.strftime("%H:%M"),
        "day_of_week": now.strftime("%A"),
    }


# A computed variable: receives the request's variables, returns the value.
ComputedVariable = Callable[[Mapping[str, str]], str]


@dataclass(frozen=True)
class Renderer:
    """Renders templates with request, system and computed variables."""

    timezone: str = "UTC"
    functions: Mapping[str, ComputedVariable] = field(default_factory=dict)
    clock: Callable[[ZoneInfo], datetime] = lambda zone: datetime.now(zone)

    def variables(self, request_values: Mapping[str, str]) -> dict[str, str]:
        """System variables, then computed ones, then the request's (which win)."""
        values = system_variables(self.clock(ZoneInfo(self.timezone)))
        for name, function in self.functions.items():
            values[name] = function(request_values)
        values.update(request_values)
        return values

    def render_text(self, text: str, request_values: Mapping[str, str], *,
                    strict: bool = True) -> str:
        return substitute(text, self.variables(request_values), strict=strict)

    def render_structured(self, spec: Any, request_values: Mapping[str, str], *,
                          strict: bool = True) -> str:
        """A structured prompt (mapping/list tree) rendered to YAML text.

        A mapping with ``when: name`` (or ``when: [a, b]``) is kept only when every named
        variable is present and non-empty; the ``when`` key itself is dropped. Leaf strings
        are substituted; empty sections disappear.
        """
        values = self.variables(request_values)
        missing: list[str] = []
        tree = _render_node(spec, values, strict, missing)
        if missing:
            raise MissingVariables(sorted(set(missing)))
        if tree is None:
            return ""
        return yaml.safe_dump(tree, sort_keys=False, allow_unicode=True, width=100).strip()


def _present(condition: Any, values: Mapping[str, str]) -> bool:
    names = condition if isinstance(condition, list) else [condition]
    return all(str(values.get(str(name), "")).strip() for name in names)


def _render_node(node: Any, values: Mapping[str, str], strict: bool,
                 missing: list[str]) -> Any:
    if isinstance(node, str):
        gaps = [name for name in placeholders(node) if name not in values]
        if gaps and strict:
            missing.extend(gaps)
            return node
        return substitute(node, values, strict=False)
    if isinstance(node, list):
        items = [_render_node(item, values, strict, missing) for item in node]
        kept = [item for item in items if item not in (None, "", [], {})]
        return kept or None
    if isinstance(node, dict):
        if "when" in node and not _present(node["when"], values):
            return None
        out = {}
        for key, value in node.items():
            if key == "when":
                continue
            rendered = _render_node(value, values, strict, missing)
            if rendered not in (None, "", [], {}):
                out[key] = rendered
        return out or None
    return node
