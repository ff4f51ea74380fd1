"""`python -m simulator [--host H] [--port P] [--scenarios FILE]`.

Prints exactly one line, `simulator listening on http://HOST:PORT`, once it accepts
connections (with the real port when `--port 0`), so a parent process can wait for it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from simulator.app import create_app, start_server
from simulator.scenario import ScenarioError
from simulator.scenario_file import load_scenario_file
from simulator.state import SimulatorState


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8900, help="0 picks a free port")
    parser.add_argument(
        "--scenarios",
        help="YAML/JSON file: {scenarios: {model: behaviour}, "
        "region_scenarios: {region: {model: behaviour}}, regions: {region: {status}}}",
    )
    return parser.parse_args(argv)


async def serve(host: str, port: int, state: SimulatorState) -> None:
    """Run until SIGINT/SIGTERM, then stop promptly (hanging calls are cancelled)."""
    runner, bound = await start_server(create_app(state), host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # e.g. Windows
            pass
    print(f"simulator listening on http://{host}:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _run(coro: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(coro)
    else:
        uvloop.run(coro)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    state = SimulatorState()
    if args.scenarios:
        try:
            load_scenario_file(args.scenarios).apply(state.scenarios)
        except (OSError, ValueError, ScenarioError) as exc:
            print(f"simulator: cannot load scenarios: {exc}", file=sys.stderr, flush=True)
            return 2
    try:
        _run(serve(args.host, args.port, state))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # typically: the port is taken
        print(f"simulator: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
