"""Stream one reply from a running gateway: `python -m llmgateway_client.demo`.

    python -m llmgateway_client.demo [--target 127.0.0.1:50051] [--model sim-chat] [--prompt "..."]
        [--cacert ca.pem [--cert client.pem --key client-key.pem] [--servername NAME]]

With `--cacert` (or `--tls`, trusting the system roots) the demo connects over TLS; `--cert`
and `--key` add the client certificate a gateway with mutual TLS asks for.

The token is `LLMGW_TOKEN` if set; otherwise the demo mints one (HS256, subject "demo",
scopes "generate retrieve") with the secret in `LLMGW_JWT_SECRET` or, failing that, in
`.data/dev-jwt-secret` under the current directory, where `make run` keeps the
development key it generates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from .auth import StaticToken, TokenMinter, TokenSource
from .channels import TlsOptions
from .client import GatewayClient
from .errors import DeadlineExceeded, GatewayError, PermissionDenied, Unauthenticated, Unavailable
from .types import StreamFinished, StreamStarted, Target, TextChunk

__all__ = ["DEV_SECRET_FILE", "DemoSetupError", "demo_token_source", "main"]

DEV_SECRET_FILE = Path(".data") / "dev-jwt-secret"
DEMO_SUBJECT = "demo"
DEMO_SCOPES = ("generate", "retrieve")
NOT_RUNNING_HINT = "is `make run` running?"


class DemoSetupError(Exception):
    """The demo cannot start (no token or secret); the message says what to do."""


def demo_token_source(environ: Mapping[str, str], cwd: Path) -> TokenSource:
    """LLMGW_TOKEN, else a minter keyed by LLMGW_JWT_SECRET or `<cwd>/.data/dev-jwt-secret`."""
    token = environ.get("LLMGW_TOKEN", "").strip()
    if token:
        return StaticToken(token)
    secret = environ.get("LLMGW_JWT_SECRET", "").strip()
    secret_file = cwd / DEV_SECRET_FILE
    if not secret and secret_file.is_file():
        secret = secret_file.read_text(encoding="utf-8").strip()
    if not secret:
        raise DemoSetupError(
            f"no credentials: set LLMGW_TOKEN or LLMGW_JWT_SECRET, or run from the directory "
            f"where the gateway keeps {DEV_SECRET_FILE} ({NOT_RUNNING_HINT})"
        )
    return TokenMinter(secret, subject=DEMO_SUBJECT, scopes=DEMO_SCOPES, algorithm="HS256")


def _describe(target: Target | None) -> str:
    if target is None:
        return "unknown"
    where = f" ({target.region})" if target.region else ""
    return f"{target.provider}/{target.model}{where}"


def _print_summary(finished: StreamFinished, out: TextIO) -> None:
    usage = finished.usage
    print(file=out)
    print(f"served by:     {_describe(finished.served_by)}", file=out)
    print(f"finish reason: {finished.finish_reason}", file=out)
    print(
        f"usage:         {usage.input_tokens} input + {usage.output_tokens} output tokens", file=out
    )
    for attempt in finished.attempts:
        if attempt.outcome != "success":
            reason = f": {attempt.error_reason}" if attempt.error_reason else ""
            print(f"  attempt {_describe(attempt.target)} {attempt.outcome}{reason}", file=out)
    if finished.charge is not None:
        print(
            f"charged:       {finished.charge.amount_micros} micro-{finished.charge.currency_code}",
            file=out,
        )
    print(f"trace id:      {finished.trace_id or '-'}", file=out)


async def stream_once(client: GatewayClient, model: str, prompt: str, out: TextIO) -> None:
    """Print the reply as it arrives, then what served it, the usage and the trace id."""
    async for event in client.stream_generate(model, prompt):
        if isinstance(event, StreamStarted):
            print(f"[{_describe(event.served_by)}]", file=out, flush=True)
        elif isinstance(event, TextChunk):
            print(event.text, end="", file=out, flush=True)
        elif isinstance(event, StreamFinished):
            _print_summary(event, out)


def _explain(error: GatewayError, target: str) -> str:
    if isinstance(error, Unavailable) and not error.reason:
        return f"cannot reach the gateway at {target}: {NOT_RUNNING_HINT} ({error.message})"
    if isinstance(error, DeadlineExceeded) and not error.reason:
        return f"no answer from the gateway at {target} in time: {NOT_RUNNING_HINT}"
    if isinstance(error, Unauthenticated | PermissionDenied):
        return (
            f"the gateway refused the demo's token: {error}. Set LLMGW_TOKEN, or check that "
            f"LLMGW_JWT_SECRET / {DEV_SECRET_FILE} is the gateway's development key."
        )
    return f"the gateway answered with an error: {error}"


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m llmgateway_client.demo",
        description="Stream one reply from a running llm-gateway.",
    )
    parser.add_argument("--target", default=os.environ.get("LLMGW_TARGET", "127.0.0.1:50051"))
    parser.add_argument("--model", default="sim-chat")
    parser.add_argument(
        "--prompt", default="In two sentences, what does an LLM gateway do for a backend team?"
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline in seconds")
    tls = parser.add_argument_group("TLS (plaintext without these)")
    tls.add_argument("--tls", action="store_true", help="TLS, trusting the system roots")
    tls.add_argument("--cacert", help="PEM CA the gateway's certificate must chain to")
    tls.add_argument("--cert", help="PEM client certificate (mutual TLS)")
    tls.add_argument("--key", help="PEM key of the client certificate")
    tls.add_argument("--servername", help="name the gateway's certificate carries, if not "
                     "the target's host")
    args = parser.parse_args(argv)
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    return args


def _tls_options(args: argparse.Namespace) -> TlsOptions | None:
    if not (args.tls or args.cacert or args.cert or args.servername):
        return None
    return TlsOptions.from_files(ca_file=args.cacert, cert_file=args.cert, key_file=args.key,
                                 server_name=args.servername)


async def _run(args: argparse.Namespace, token_source: TokenSource,
               tls: TlsOptions | None) -> None:
    async with GatewayClient(
        args.target, token_source=token_source, timeout_s=args.timeout, max_retries=1, tls=tls
    ) as client:
        await stream_once(client, args.model, args.prompt, sys.stdout)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        token_source = demo_token_source(os.environ, Path.cwd())
    except DemoSetupError as error:
        print(f"demo: {error}", file=sys.stderr)
        return 2
    try:
        tls = _tls_options(args)
    except OSError as error:
        print(f"demo: cannot read {error.filename}: {error.strerror}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_run(args, token_source, tls))
    except GatewayError as error:
        print(file=sys.stdout)
        print(f"demo: {_explain(error, args.target)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
