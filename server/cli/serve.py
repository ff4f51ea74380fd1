"""``llmgw serve``: run the gRPC server (one process, N workers, or with the simulator)."""

from __future__ import annotations

import argparse

from server.cli.options import load, with_config


def register(commands: argparse._SubParsersAction) -> None:
    serve = with_config(commands.add_parser("serve", help="run the gRPC server"))
    serve.add_argument("--host", help="bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="gRPC port (default 50051)")
    serve.add_argument("--metrics-port", type=int, help="Prometheus port (default 9464)")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes sharing the port (SO_REUSEPORT)")
    serve.add_argument("--with-simulator", action="store_true",
                       help="also start the vendor simulator (make run)")
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    serve.set_defaults(func=run)


def run(ns: argparse.Namespace) -> int:
    from server import serve
    from server.kernel.telemetry import configure_logging

    config = load(ns)
    configure_logging(config.logging)
    if ns.worker:
        serve.serve_worker(config)
        return 0
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
    return 0
