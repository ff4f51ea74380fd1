"""``llmgw token``: mint a development JWT with the configured key."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from server.cli.options import load, with_config


def register(commands: argparse._SubParsersAction) -> None:
    token = with_config(commands.add_parser("token", help="mint a development JWT"))
    token.add_argument("--sub", required=True, help="subject (the calling service)")
    token.add_argument("--scope", nargs="+", default=["generate"],
                       help="scopes, e.g. generate retrieve ingest billing:charge admin")
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.add_argument("--algorithm", default="HS256", choices=["HS256", "RS256", "ES256"])
    token.add_argument("--private-key", type=Path, help="PEM private key for RS256/ES256")
    token.add_argument("--kid", help="key id header")
    token.add_argument("--tenant", help="the tenant claim (tenancy.claim), e.g. acme")
    token.add_argument("--tier", help="the tier claim (tenancy.tier_claim), e.g. pro")
    token.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    from server.auth.keys import jwt_secret
    from server.auth.tokens import mint_token

    config = load(ns)
    key: str | bytes | None
    if ns.private_key:
        key = ns.private_key.read_bytes()
    else:
        key = jwt_secret(config, os.environ)
    if key is None:
        raise SystemExit("llmgw: no signing key: set LLMGW_JWT_SECRET or pass --private-key")
    claims = {name: value for name, value in ((config.tenancy.claim, ns.tenant),
                                              (config.tenancy.tier_claim, ns.tier)) if value}
    print(mint_token(key=key, algorithm=ns.algorithm, subject=ns.sub, scopes=ns.scope,
                     issuer=config.auth.issuer, audience=config.auth.audience,
                     ttl_s=ns.ttl, kid=ns.kid, extra_claims=claims or None))
    return 0
