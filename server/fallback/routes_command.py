"""``llmgw routes list|set|delete``: change routes in the database without a deploy.

Every gateway process picks a change up within ``routing.routes_refresh_s``. ``set``
takes the route in the config's ``models.<name>`` shape (JSON or YAML), validated
against this deployment's providers and models before it is stored, e.g.

    llmgw routes set gpt-4o-mini --spec '{targets: [{provider: simulator, model: sim-chat}]}'
"""

from __future__ import annotations

import asyncio
import json
import sys

import yaml
from pydantic import ValidationError

from server.config import GatewayConfig
from server.db.engine import create_engine
from server.fallback.route_store import RouteStore, check_route
from server.fallback.routes import route_from_spec, route_to_spec, routes_from_config


async def _list(store: RouteStore, config: GatewayConfig) -> int:
    stored = await store.load()
    for name, route in sorted({**routes_from_config(config), **stored}.items()):
        source = "database" if name in stored else "config"
        targets = ", ".join(f"{t.provider}/{t.model}" + (f"@{t.region}" if t.region else "")
                            + (f" w{t.weight}" if route.strategy == "weighted" else "")
                            for t in route.targets)
        fallbacks = f" → {', '.join(route.fallbacks)}" if route.fallbacks else ""
        print(f"{name:28} [{source}] {route.strategy}: {targets}{fallbacks}")
    return 0


async def _set(store: RouteStore, config: GatewayConfig, name: str, spec_text: str) -> int:
    try:
        spec = yaml.safe_load(spec_text)
        route = route_from_spec(name, spec if isinstance(spec, dict) else {})
    except (yaml.YAMLError, ValidationError) as exc:
        print(f"llmgw: invalid route spec: {exc}", file=sys.stderr)
        return 2
    stored = await store.load()
    problems = check_route(route, config.providers,
                           set(config.models) | set(stored) | {name})
    if problems:
        print("llmgw: " + "; ".join(problems), file=sys.stderr)
        return 2
    await store.put(route, updated_by="llmgw routes set")
    print(f"route {name} stored: {json.dumps(route_to_spec(route))}")
    return 0


async def _delete(store: RouteStore, name: str) -> int:
    if not await store.delete(name):
        print(f"llmgw: no stored route {name!r}", file=sys.stderr)
        return 1
    print(f"route {name} deleted (the config's route, if any, applies again)")
    return 0


async def _run(config: GatewayConfig, database_url: str, action: str, name: str | None,
               spec: str | None) -> int:
    engine = create_engine(database_url, pool_size=1)
    try:
        store = RouteStore(engine)
        if action == "list":
            return await _list(store, config)
        if action == "set":
            return await _set(store, config, name or "", spec or "")
        return await _delete(store, name or "")
    finally:
        await engine.dispose()


def run_routes(config: GatewayConfig, database_url: str, action: str, name: str | None = None,
               spec: str | None = None) -> int:
    """The exit code of ``llmgw routes <action>``."""
    return asyncio.run(_run(config, database_url, action, name, spec))
