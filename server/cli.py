"""``llmgw``: serve, migrate, mint development tokens, check the configuration."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from server.config import ConfigError, GatewayConfig, load_config


def _load(ns: argparse.Namespace) -> GatewayConfig:
    try:
        config = load_config(ns.config)
    except ConfigError as exc:
        raise SystemExit(f"llmgw: {exc}") from None
    server = {k: v for k, v in (("host", getattr(ns, "host", None)),
                                ("port", getattr(ns, "port", None)),
                                ("metrics_port", getattr(ns, "metrics_port", None)))
              if v is not None}
    if server:
        config = config.model_copy(update={"server": config.server.model_copy(update=server)})
    return config


def cmd_serve(ns: argparse.Namespace) -> None:
    from server import serve
    from server.telemetry import configure_logging

    config = _load(ns)
    configure_logging(config.logging)
    if ns.worker:
        serve.serve_worker(config)
        return
    simulator = None
    if ns.with_simulator:
        simulator = serve.start_simulator_process(config.providers["simulator"].base_url
                                                  if "simulator" in config.providers else None)
    try:
        if ns.workers > 1:
            serve.serve_workers(config, ns.workers, ns.config)
        else:
            serve.serve_single(config)
    finally:
        if simulator is not None:
            simulator.terminate()
            simulator.wait(5)


def cmd_migrate(ns: argparse.Namespace) -> None:
    from server.serve import prepare_database

    config = _load(ns)
    config = config.model_copy(update={
        "database": config.database.model_copy(update={"migrate_on_start": True})})
    url = prepare_database(config)
    print(f"migrated {'embedded database' if not config.database.url else 'DATABASE_URL'}"
          f" to head ({url.split('?')[0].rsplit('@', 1)[-1] or 'unix socket'})")
    if config.prompts.load_defaults:
        import asyncio

        from server.prompts.store import load_default_prompts

        added = asyncio.run(load_default_prompts(url))
        print(f"prompt templates: {added} canonical version(s) added")


def cmd_token(ns: argparse.Namespace) -> None:
    from server.app import jwt_secret
    from server.auth.tokens import mint_token

    config = _load(ns)
    key: str | bytes | None
    if ns.private_key:
        key = ns.private_key.read_bytes()
    else:
        key = jwt_secret(config, os.environ)
    if key is None:
        raise SystemExit("llmgw: no signing key: set LLMGW_JWT_SECRET or pass --private-key")
    print(mint_token(key=key, algorithm=ns.algorithm, subject=ns.sub, scopes=ns.scope,
                     issuer=config.auth.issuer, audience=config.auth.audience,
                     ttl_s=ns.ttl, kid=ns.kid))


def cmd_ledger_check(ns: argparse.Namespace) -> None:
    from server.billing.check_command import run_check
    from server.db.embedded import start_embedded

    config = _load(ns)
    raise SystemExit(run_check(config.database.url or start_embedded(config.data_dir)))


def cmd_ingest(ns: argparse.Namespace) -> None:
    from server.rag.ingest_command import run_ingest

    raise SystemExit(run_ingest(_load(ns), ns.path, ns.namespace, ns.chunk_size,
                                ns.chunk_overlap, ns.batch))


def cmd_routes(ns: argparse.Namespace) -> None:
    from server.db.embedded import start_embedded
    from server.fallback.routes_command import run_routes

    config = _load(ns)
    raise SystemExit(run_routes(config, config.database.url or start_embedded(config.data_dir),
                                ns.routes_command, getattr(ns, "name", None),
                                getattr(ns, "spec", None)))


def cmd_check_config(ns: argparse.Namespace) -> None:
    config = _load(ns)
    print(f"configuration OK: {len(config.providers)} providers, {len(config.models)} models,"
          f" auth {'on' if config.auth.enabled else 'OFF'},"
          f" database {'external' if config.database.url else 'embedded'},"
          f" rate limits {'redis' if config.rate_limits.redis_url else 'in-process'}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llmgw", description="LLM gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, default=None,
                       help="YAML config file (default: $LLMGW_CONFIG or the embedded defaults)")
        return p

    serve = with_config(sub.add_parser("serve", help="run the gRPC server"))
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="gRPC port (default 50051)")
    serve.add_argument("--metrics-port", type=int, help="Prometheus port (default 9464)")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the port (SO_REUSEPORT)")
    serve.add_argument("--with-simulator", action="store_true",
                       help="also start the vendor simulator (make run)")
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    migrate = with_config(sub.add_parser("migrate", help="apply database migrations"))
    migrate.set_defaults(func=cmd_migrate)

    token = with_config(sub.add_parser("token", help="mint a development JWT"))
    token.add_argument("--sub", required=True, help="subject (the calling service)")
    token.add_argument("--scope", nargs="+", default=["generate"],
                       help="scopes, e.g. generate retrieve ingest billing:charge admin")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--algorithm", default="HS256", choices=["HS256", "RS256", "ES256"])
    token.add_argument("--private-key", type=Path, help="PEM private key for RS256/ES256")
    token.add_argument("--kid", help="key id header")
    token.set_defaults(func=cmd_token)

    ledger = sub.add_parser("ledger", help="wallet ledger tools")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True)
    ledger_check = with_config(ledger_sub.add_parser(
        "check", help="verify every ledger invariant; exit 1 on any violation"))
    ledger_check.set_defaults(func=cmd_ledger_check)

    ingest = with_config(sub.add_parser("ingest", help="load .txt/.md files into a namespace"))
    ingest.add_argument("path", type=Path, help="a folder (searched recursively) or one file")
    ingest.add_argument("--namespace", required=True, help="the retrieval namespace")
    ingest.add_argument("--chunk-size", type=int, help="characters per chunk (default: config)")
    ingest.add_argument("--chunk-overlap", type=int, help="overlap in characters")
    ingest.add_argument("--batch", type=int, default=32, help="documents per transaction")
    ingest.set_defaults(func=cmd_ingest)

    routes = sub.add_parser("routes", help="list or change routes without a deploy")
    routes_sub = routes.add_subparsers(dest="routes_command", required=True)
    with_config(routes_sub.add_parser("list", help="routes in force (config + database)"))
    routes_set = with_config(routes_sub.add_parser("set", help="store a route in the database"))
    routes_set.add_argument("name", help="the model alias")
    routes_set.add_argument("--spec", required=True,
                            help="the route as JSON/YAML in the config's models.<name> shape")
    routes_delete = with_config(routes_sub.add_parser("delete", help="remove a stored route"))
    routes_delete.add_argument("name", help="the model alias")
    routes.set_defaults(func=cmd_routes)
    for parser_ in routes_sub.choices.values():
        parser_.set_defaults(func=cmd_routes)

    check = with_config(sub.add_parser("check-config", help="validate the configuration"))
    check.set_defaults(func=cmd_check_config)
    return parser


def main(argv: list[str] | None = None) -> None:
    ns = build_parser().parse_args(argv)
    ns.func(ns)


if __name__ == "__main__":
    main(sys.argv[1:])
