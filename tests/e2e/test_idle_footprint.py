"""What a gateway holds after serving chat: the modules only embedding, retrieval or
strict JSON schemas need stay unloaded (issue 15: idle RSS). Checked from outside, in
the process's memory map: numpy's and jsonschema's (rpds) compiled modules are not mapped
after a Generate and a StreamGenerate through the default OpenAI-compatible transport.
(tests/unit/test_start_up_imports.py checks start-up; tests/providers/
test_openai_without_sdk.py that the direct transport needs no openai SDK.)"""

from __future__ import annotations

from pathlib import Path

import grpc
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from tests.support.gateway import GatewayProcess, bearer, raw_test_config

NOT_MAPPED = ("/numpy/", "/numpy.libs/", "/rpds/")


def test_chat_loads_neither_numpy_nor_jsonschema(simulator, pg_url, tmp_path: Path):
    raw = raw_test_config(simulator.base_url, tmp_path, database={"url": pg_url})
    with GatewayProcess(raw, tmp_path) as gw, grpc.insecure_channel(gw.target) as channel:
        stub = pb_grpc.GenerationServiceStub(channel)
        ask = {"messages": [pb.Message(role="user", content="hi")],
               "targets": [pb.Target(provider="simulator", model="sim-chat")]}
        answer = stub.Generate(pb.GenerateRequest(**ask), metadata=bearer("generate"),
                               timeout=20)
        events = list(stub.StreamGenerate(pb.StreamGenerateRequest(**ask),
                                          metadata=bearer("generate"), timeout=20))
        assert answer.text and events[-1].WhichOneof("event") == "end"
        assert gw.process is not None
        maps = Path(f"/proc/{gw.process.pid}/maps").read_text()
        assert [part for part in NOT_MAPPED if part in maps] == []
