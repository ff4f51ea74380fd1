"""`python -m simulator.ctl` — script a running simulator from the shell (outage demos).

    python -m simulator.ctl region-down us-east-1            # every Bedrock call there: 503
    python -m simulator.ctl scenario gemini-2.5-pro --always-status 503
    python -m simulator.ctl scenario gpt-4o --fail 429x2     # 429 twice, then OK
    python -m simulator.ctl scenario deepseek.r1-v1:0 --region ap-south-1 --timeout
    python -m simulator.ctl scenario claude-sonnet-4 --drop-after 3  # cut TCP after 3 tokens

Silent misbehaviour: HTTP 200 and a cleanly ended body, but an incomplete or wrong
answer, which a gateway must not pass on as success (details in `simulator.faults`):

    python -m simulator.ctl scenario gpt-4o --truncate-after 3      # 3 text chunks, then end
    python -m simulator.ctl scenario gpt-4o --truncate-after 0      # end before any text
    python -m simulator.ctl scenario gpt-4o --omit-terminal-event   # all text, no end event
    python -m simulator.ctl scenario gpt-4o --truncate-body         # unary JSON cut in half
    python -m simulator.ctl scenario gpt-4o --misreport-usage zero  # or huge

A truncated stream lacks its vendor's terminal event: the finish chunk and `[DONE]`
(OpenAI), `message_delta`/`message_stop` (Anthropic), the chunk with `finishReason`
(Gemini), `messageStop`/`metadata` (Bedrock).

`--url` (or $SIMULATOR_URL) picks the simulator; default http://127.0.0.1:8900.
Prints the control API's JSON answer; exits 1 when it reports an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8900"


def _failure(spec: str) -> dict[str, Any]:
    """`429`, `429x2` or `429x2@1.5` → a failures entry (status, count, retry_after_s)."""
    head, _, retry = spec.partition("@")
    status, _, count = head.partition("x")
    try:
        out: dict[str, Any] = {"status": int(status), "count": int(count or 1)}
        if retry:
            out["retry_after_s"] = float(retry)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected STATUS[xCOUNT][@RETRY_AFTER_S]: {spec}"
        ) from None
    return out


def _behaviour(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(args.json) if args.json else {}
    fields = {
        "latency_ms": args.latency_ms,
        "tokens_per_second": args.tokens_per_second,
        "reply": args.reply,
        "reply_tokens": args.reply_tokens,
        "always_status": args.always_status,
        "drop_after_tokens": args.drop_after,
        "drop_error_status": args.drop_error_status,
        "content_filter": args.content_filter,
        "truncate_after_chunks": args.truncate_after,
        "misreport_usage": args.misreport_usage,
    }
    body.update({k: v for k, v in fields.items() if v is not None})
    if args.fail:
        body["failures"] = args.fail
    if args.timeout:
        body["timeout"] = True
    if args.not_found:
        body["not_found"] = True
    if args.omit_terminal_event:
        body["omit_terminal_event"] = True
    if args.truncate_body:
        body["truncate_body"] = True
    return body


def _region_query(region: str | None) -> str:
    return "" if not region else f"?region={quote(region, safe='')}"


def build_request(args: argparse.Namespace) -> tuple[str, str, Any]:
    """(method, path, json body) for the chosen subcommand."""
    match args.command:
        case "stats":
            return "GET", "/_sim/stats", None
        case "scenarios":
            return "GET", "/_sim/scenarios", None
        case "regions":
            return "GET", "/_sim/regions", None
        case "reset":
            return "POST", "/_sim/reset", None
        case "scenario":
            path = "/_sim/scenarios/" + quote(args.model, safe="/:@") + _region_query(args.region)
            return "PUT", path, _behaviour(args)
        case "clear-scenario":
            path = "/_sim/scenarios/" + quote(args.model, safe="/:@") + _region_query(args.region)
            return "DELETE", path, None
        case "region-down":
            body: dict[str, Any] = {"down": True, "status": args.status}
            if args.message:
                body["message"] = args.message
            return "PUT", "/_sim/regions/" + quote(args.region, safe=""), body
        case "region-up":
            return "DELETE", "/_sim/regions/" + quote(args.region, safe=""), None
    raise ValueError(f"unknown command {args.command}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m simulator.ctl",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--url", default=os.environ.get("SIMULATOR_URL", DEFAULT_URL))
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("stats", help="counters (requests by model/vendor/region, statuses …)")
    sub.add_parser("scenarios", help="scripted behaviours")
    sub.add_parser("regions", help="regions that are down")
    sub.add_parser("reset", help="clear scenarios and outages, zero counters")

    scenario = sub.add_parser("scenario", help="set a model's behaviour (replaces it)")
    scenario.add_argument("model")
    scenario.add_argument("--region", help="only in this region (Bedrock)")
    scenario.add_argument("--latency-ms", type=float)
    scenario.add_argument("--tokens-per-second", type=float)
    scenario.add_argument("--reply")
    scenario.add_argument("--reply-tokens", type=int)
    scenario.add_argument("--always-status", type=int)
    scenario.add_argument(
        "--fail",
        type=_failure,
        action="append",
        metavar="STATUS[xN][@S]",
        help="fail the next N calls with STATUS (repeatable, in order)",
    )
    scenario.add_argument("--timeout", action="store_true", help="never answer")
    scenario.add_argument("--drop-after", type=int, metavar="TOKENS")
    scenario.add_argument("--drop-error-status", type=int, help="drop as an in-stream error")
    scenario.add_argument("--not-found", action="store_true")
    scenario.add_argument("--content-filter", choices=("prompt", "response"))
    scenario.add_argument(
        "--truncate-after",
        type=int,
        metavar="CHUNKS",
        help="end a stream cleanly after CHUNKS text chunks, without the terminal event",
    )
    scenario.add_argument(
        "--omit-terminal-event",
        action="store_true",
        help="send every text chunk, then end the stream without the terminal event",
    )
    scenario.add_argument(
        "--truncate-body",
        action="store_true",
        help="cut a unary reply's JSON in half (status 200, matching Content-Length)",
    )
    scenario.add_argument(
        "--misreport-usage", choices=("zero", "huge"), help="report usage as 0 or absurdly large"
    )
    scenario.add_argument("--json", help="a full behaviour object; flags override its fields")

    clear = sub.add_parser("clear-scenario", help="remove a model's behaviour")
    clear.add_argument("model")
    clear.add_argument("--region")

    down = sub.add_parser("region-down", help="fail every call in a region")
    down.add_argument("region")
    down.add_argument("--status", type=int, default=503)
    down.add_argument("--message")

    up = sub.add_parser("region-up", help="end a region outage")
    up.add_argument("region")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    method, path, body = build_request(args)
    try:
        response = httpx.request(method, args.url.rstrip("/") + path, json=body, timeout=10.0)
    except httpx.HTTPError as exc:
        print(f"simulator.ctl: cannot reach {args.url}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(response.json(), indent=2) if response.content else "")
    return 0 if response.status_code < 400 else 1


if __name__ == "__main__":
    sys.exit(main())
