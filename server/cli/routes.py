"""``llmgw routes list|set|delete``: change routes in the database without a deploy.

Every gateway process picks a change up within ``routing.routes_refresh_s``. ``set``
takes the route in the config's ``models.<name>`` shape (JSON or YAML), validated
against this deployment's providers and models before it is stored, e.g.

    llmgw routes set gpt-4o-mini --spec '{targets: [{provider: simulator, model: sim-chat}]}'

Every change is recorded in the audit trail (kind ``route``, the stored spec before and
after; ``llmgw audit --kind route`` lists them).

Exit status: 0 done, 1 nothing to delete, 2 a spec that is not valid here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import TYPE_CHECKING

from server.cli.audit import record_cli_change
from server.cli.options import database_url, load, with_config

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from server.kernel.config import GatewayConfig
    from server.fallback.route_store import RouteStore
    from server.fallback.routes import Route


def register(commands: argparse._SubParsersAction) -> None:
    routes = commands.add_parser("routes", help="list or change routes without a deploy")
    actions = routes.add_subparsers(dest="routes_command", required=True)
    listing = with_config(actions.add_parser("list", help="routes in force (config + database)"))
    listing.set_defaults(func=run)
    put = with_config(actions.add_parser("set", help="store a route in the database"))
    put.add_argument("name", help="the model alias")
    put.add_argument("--spec", required=True,
                     help="the route as JSON/YAML in the config's models.<name> shape")
    put.set_defaults(func=run)
    delete = with_config(actions.add_parser("delete", help="remove a stored route"))
    delete.add_argument("name", help="the model alias")
    delete.set_defaults(func=run)
    for command in (put, delete):
        command.add_argument("--tenant", help="the route is this tenant's own: only its "
                             "callers see it (shadowing a shared route of the same name)")


def run(ns: argparse.Namespace) -> int:
    config = load(ns)
    return asyncio.run(_run(config, database_url(config), ns))


async def _run(config: GatewayConfig, url: str, ns: argparse.Namespace) -> int:
    from server.kernel.db.engine import create_engine
    from server.fallback.route_store import RouteStore

    engine = create_engine(url, pool_size=1)
    try:
        store = RouteStore(engine)
        if ns.routes_command == "list":
            return await _list(store, config)
        name = _stored_name(ns.name, ns.tenant)
        if name is None:
            return 2
        ns.name = name
        if ns.routes_command == "set":
            return await _set(store, config, ns.name, ns.spec, engine)
        return await _delete(store, ns.name, engine)
    finally:
        await engine.dispose()


def _stored_name(name: str, tenant: str | None) -> str | None:
    """The route's stored name: the tenant's own (``tenant|name``) or a shared one."""
    from server.kernel.tenancy import SEPARATOR, TENANT_NAME, Tenant

    if SEPARATOR in name:
        print(f"llmgw: a route name may not contain {SEPARATOR!r}", file=sys.stderr)
        return None
    if tenant is None:
        return name
    if not TENANT_NAME.fullmatch(tenant):
        print(f"llmgw: --tenant {tenant!r} is not a tenant name", file=sys.stderr)
        return None
    return Tenant(tenant).own(name, "name")


def describe(name: str, route: Route, source: str) -> str:
    """One line of ``llmgw routes list``: name, where it comes from, strategy, targets."""
    targets = ", ".join(f"{t.provider}/{t.model}" + (f"@{t.region}" if t.region else "")
                        + (f" w{t.weight}" if route.strategy == "weighted" else "")
                        for t in route.targets)
    fallbacks = f" → {', '.join(route.fallbacks)}" if route.fallbacks else ""
    return f"{name:28} [{source}] {route.strategy}: {targets}{fallbacks}"


async def _list(store: RouteStore, config: GatewayConfig) -> int:
    from server.fallback.routes import routes_from_config

    stored = await store.load()
    for name, route in sorted({**routes_from_config(config), **stored}.items()):
        print(describe(name, route, "database" if name in stored else "config"))
    return 0


async def _set(store: RouteStore, config: GatewayConfig, name: str, spec_text: str,
               engine: AsyncEngine) -> int:
    import yaml
    from pydantic import ValidationError

    from server.audit.snapshots import Snapshots
    from server.fallback.route_store import check_route
    from server.fallback.routes import route_from_spec, route_to_spec

    try:
        spec = yaml.safe_load(spec_text)
        route = route_from_spec(name, spec if isinstance(spec, dict) else {})
    except (yaml.YAMLError, ValidationError) as exc:
        print(f"llmgw: invalid route spec: {exc}", file=sys.stderr)
        return 2
    stored = await store.load()
    problems = check_route(route, config.providers, set(config.models) | set(stored) | {name})
    if problems:
        print("llmgw: " + "; ".join(problems), file=sys.stderr)
        return 2
    before = await Snapshots(engine).route(name)
    await store.put(route, updated_by="llmgw routes set")
    await record_cli_change(engine, kind="route", method="llmgw routes set", object_id=name,
                            before=before, after=route_to_spec(route),
                            request={"name": name, "spec": spec})
    print(f"route {name} stored: {json.dumps(route_to_spec(route))}")
    return 0


async def _delete(store: RouteStore, name: str, engine: AsyncEngine) -> int:
    from server.audit.snapshots import Snapshots

    before = await Snapshots(engine).route(name)
    if not await store.delete(name):
        print(f"llmgw: no stored route {name!r}", file=sys.stderr)
        return 1
    await record_cli_change(engine, kind="route", method="llmgw routes delete", object_id=name,
                            before=before, after=None, request={"name": name})
    print(f"route {name} deleted (the config's route, if any, applies again)")
    return 0
