"""Prompt rendering: variables, system variables, computed variables, strictness, no
double expansion, structured YAML prompts with optional sections."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
import yaml

from server.kernel.errors import GatewayError
from server.prompts.render import MissingVariables, Renderer, placeholders, substitute
from server.prompts.templates import PromptTemplate, render

FIXED = datetime(2026, 3, 6, 21, 30, tzinfo=ZoneInfo("UTC"))


def renderer(zone: str = "UTC", **functions) -> Renderer:
    return Renderer(timezone=zone, functions=functions,
                    clock=lambda tz: FIXED.astimezone(tz))


def test_user_and_system_variables_fill_placeholders():
    text = "Hi {{ name }}, today is {{day_of_week}} {{current_date}} at {{current_time}}."
    assert renderer().render_text(text, {"name": "Ada"}) == \
        "Hi Ada, today is Friday 2026-03-06 at 21:30."


def test_time_zone_is_configurable():
    # 21:30 UTC on Friday is already Saturday in Tokyo.
    out = renderer("Asia/Tokyo").render_text("{{day_of_week}} {{current_date}} {{current_time}}", {})
    assert out == "Saturday 2026-03-07 06:30"


def test_computed_variables_come_from_the_function_map():
    r = renderer(greeting=lambda v: f"Dear {v.get('name', 'friend')}")
    assert r.render_text("{{greeting}}!", {"name": "Lin"}) == "Dear Lin!"


def test_request_values_win_over_system_values():
    assert renderer().render_text("{{current_date}}", {"current_date": "yesterday"}) == "yesterday"


def test_strict_mode_names_every_missing_variable():
    with pytest.raises(MissingVariables) as caught:
        substitute("{{a}} {{b}} {{a}} {{c}}", {"b": "x"})
    assert caught.value.names == ["a", "c"]


def test_lenient_mode_leaves_missing_variables_empty():
    assert substitute("[{{a}}]({{b}})", {"b": "x"}, strict=False) == "[](x)"


def test_values_are_inserted_literally_never_expanded_again():
    out = substitute("Q: {{question}}", {"question": "show {{secret}} and {{question}}",
                                          "secret": "TOP-SECRET"})
    assert out == "Q: show {{secret}} and {{question}}"
    assert "TOP-SECRET" not in out


def test_placeholders_lists_names_once_in_order():
    assert placeholders("{{b}} {{a}} {{ b }}") == ["b", "a"]


ASTRO = {
    "role": "You are Stella.",
    "today": "Today is {{day_of_week}}.",
    "profile": {"when": "profile", "details": "{{profile}}"},
    "memories": {"when": ["memories"], "notes": "{{memories}}"},
    "rules": ["Be brief.", "Address {{user_name}} by name."],
}


def test_structured_prompt_without_optional_sections():
    text = renderer().render_structured(ASTRO, {"user_name": "Ada"})
    assert yaml.safe_load(text) == {"role": "You are Stella.", "today": "Today is Friday.",
                                    "rules": ["Be brief.", "Address Ada by name."]}


def test_structured_prompt_with_optional_sections():
    text = renderer().render_structured(ASTRO, {"user_name": "Ada", "profile": "Leo, 34",
                                                "memories": "likes tea"})
    tree = yaml.safe_load(text)
    assert tree["profile"] == {"details": "Leo, 34"}
    assert tree["memories"] == {"notes": "likes tea"}
    assert list(tree) == ["role", "today", "profile", "memories", "rules"]


def test_structured_prompt_is_strict_about_unconditional_variables():
    with pytest.raises(MissingVariables) as caught:
        renderer().render_structured(ASTRO, {})
    assert caught.value.names == ["user_name"]


def test_template_render_errors_name_the_field():
    template = PromptTemplate("support", 3, system="For {{product}}", user="{{question}}")
    with pytest.raises(GatewayError) as caught:
        render(template, renderer(), {"product": "Widget"})
    assert [v.field for v in caught.value.violations] == ["prompt.variables[question]"]
    rendered = render(template, renderer(), {"product": "Widget", "question": "Why?"})
    assert (rendered.system, rendered.user, rendered.version) == ("For Widget", "Why?", 3)


def test_llmgw_migrate_loads_the_canonical_prompts(pg_url):
    import os
    import subprocess
    import sys

    from tests.support.gateway import ROOT

    result = subprocess.run([sys.executable, "-m", "server.cli", "migrate"], cwd=ROOT,
                            env={**os.environ, "DATABASE_URL": pg_url}, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert "migrated DATABASE_URL to head" in result.stdout
    assert "prompt templates:" in result.stdout  # already loaded by the gateway: 0 added
