"""Routes stored in Postgres (table ``routes``, migration 0004) and the cache refresher.

Why a poll and not a notification: every gateway process must pick up a change, a poll
of one small table every few seconds is cheap, and it needs nothing beyond the database
the gateway already has. A refresh that fails (database down) keeps the last good
routes: routing must not depend on the database being up.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from server.fallback.routes import Route, RouteCache, route_from_spec, route_to_spec

log = logging.getLogger("llmgw.routes")


class RouteStore:
    """CRUD of stored routes; specs are validated on the way in and on the way out."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def load(self) -> dict[str, Route]:
        """Every valid stored route (an invalid row is logged and ignored, never served)."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(text("SELECT name, spec FROM routes"))).all()
        routes: dict[str, Route] = {}
        for name, spec in rows:
            try:
                routes[name] = route_from_spec(name, spec if isinstance(spec, dict)
                                               else json.loads(spec))
            except (ValidationError, ValueError) as exc:
                log.warning("stored route %s is invalid and ignored: %s", name, exc)
        return routes

    async def put(self, route: Route, updated_by: str = "") -> None:
        async with self._engine.begin() as conn:
            await conn.execute(text(
                "INSERT INTO routes (name, spec, updated_by) VALUES (:name, CAST(:spec AS jsonb), :by) "
                "ON CONFLICT (name) DO UPDATE SET spec = EXCLUDED.spec, "
                "updated_at = now(), updated_by = EXCLUDED.updated_by"),
                {"name": route.name, "spec": json.dumps(route_to_spec(route)), "by": updated_by})

    async def delete(self, name: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(text("DELETE FROM routes WHERE name = :name"),
                                        {"name": name})
        return bool(result.rowcount)


def check_route(route: Route, providers: Mapping[str, Any], known_models: set[str]) -> list[str]:
    """What is wrong with a route in this deployment (unknown providers or fallbacks)."""
    bad = [f"targets[{i}].provider: unknown provider {t.provider!r}"
           for i, t in enumerate(route.targets) if t.provider not in providers]
    bad += [f"fallbacks[{i}]: unknown model {name!r}"
            for i, name in enumerate(route.fallbacks) if name not in known_models]
    return bad


async def refresh_once(store: RouteStore, cache: RouteCache,
                       providers: Mapping[str, Any]) -> bool:
    """Load the stored routes into the cache; False (cache unchanged) when it fails."""
    try:
        stored = await store.load()
    except Exception as exc:  # noqa: BLE001 - keep the last good routes whatever went wrong
        log.warning("route refresh failed; keeping the current routes: %s", type(exc).__name__)
        return False
    known = set(cache.all()) | set(stored)
    usable = {}
    for name, route in stored.items():
        problems = check_route(route, providers, known)
        if problems:
            log.warning("stored route %s ignored: %s", name, "; ".join(problems))
        else:
            usable[name] = route
    cache.replace_overrides(usable)
    return True


async def refresh_forever(store: RouteStore, cache: RouteCache, providers: Mapping[str, Any],
                          interval_s: float) -> None:
    """The gateway's background task: refresh every ``interval_s`` until cancelled."""
    while True:
        await refresh_once(store, cache, providers)
        await asyncio.sleep(interval_s)
