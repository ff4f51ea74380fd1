"""What every command shares: the ``--config`` option, loading it, and the database URL."""

from __future__ import annotations

import argparse
from pathlib import Path

from server.kernel.config import ConfigError, GatewayConfig, load_config


def with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", type=Path, default=None,
                        help="YAML config file (default: $LLMGW_CONFIG or the embedded defaults)")
    return parser


def load(ns: argparse.Namespace) -> GatewayConfig:
    """The configuration named by ``--config``, with any ``--host/--port/--metrics-port``
    given on the command line applied; a bad file ends the command with its message."""
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


def database_url(config: GatewayConfig) -> str:
    """``DATABASE_URL`` or the embedded server (started if need be), without migrating:
    the read-mostly tools must not change the schema behind a running gateway's back."""
    from server.kernel.db.embedded import start_embedded

    return config.database.url or start_embedded(config.data_dir)
