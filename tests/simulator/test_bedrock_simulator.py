"""The Bedrock Runtime simulator, specified through an unchanged boto3 client.

Regions: every region is served by one simulator process; a client's region is the
`/bedrock/{region}` path prefix of its endpoint URL, or else its SigV4 credential scope.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, EventStreamError
from urllib3.exceptions import ProtocolError

from simulator.testing import SimulatorProcess

MODEL = "anthropic.claude-3-haiku-20240307-v1:0"
MESSAGES = [{"role": "user", "content": [{"text": "say hello to the gateway"}]}]
SYSTEM = [{"text": "be brief"}]
PROMPT_TOKENS = 5 + 2 + 3  # words in the message and the system prompt + 3 per message
NO_RETRIES = Config(retries={"total_max_attempts": 1}, read_timeout=10)

Factory = Callable[..., Any]


@pytest.fixture(autouse=True)
def clean(sim: SimulatorProcess) -> None:
    sim.reset()


@pytest.fixture
def bedrock(sim: SimulatorProcess) -> Factory:
    """`bedrock(region)` → a bedrock-runtime client for that region of the simulator."""

    def make(
        region: str = "us-east-1", *, key: str = "AKIDSIMULATOR", path_prefix: bool = True
    ) -> Any:
        endpoint = (
            sim.bedrock_endpoint_url(region) if path_prefix else sim.bedrock_base_endpoint_url
        )
        return boto3.client(
            "bedrock-runtime",
            region_name=region,
            endpoint_url=endpoint,
            aws_access_key_id=key,
            aws_secret_access_key="simulator-secret",
            config=NO_RETRIES,
        )

    return make


def converse(client: Any, model: str = MODEL, **kwargs: Any) -> dict[str, Any]:
    return client.converse(modelId=model, messages=MESSAGES, system=SYSTEM, **kwargs)


def stream_events(client: Any, model: str = MODEL, **kwargs: Any) -> list[dict[str, Any]]:
    response = client.converse_stream(modelId=model, messages=MESSAGES, system=SYSTEM, **kwargs)
    return list(response["stream"])


# --------------------------------------------------------------------------- converse


def test_converse_returns_text_usage_stop_reason_and_metrics(
    bedrock: Factory, sim: SimulatorProcess
) -> None:
    result = converse(bedrock("us-east-1"), inferenceConfig={"temperature": 0.2, "topP": 0.9})

    message = result["output"]["message"]
    assert message["role"] == "assistant"
    assert message["content"][0]["text"].startswith(f"Hello from {MODEL}.")
    assert result["stopReason"] == "end_turn"
    assert result["usage"] == {
        "inputTokens": PROMPT_TOKENS,
        "outputTokens": 12,
        "totalTokens": PROMPT_TOKENS + 12,
    }
    assert result["metrics"]["latencyMs"] >= 1
    stats = sim.stats()
    assert stats["requests_by_vendor"] == {"bedrock": 1}
    assert stats["requests_by_region_model"] == {f"us-east-1/{MODEL}": 1}


def test_max_tokens_and_stop_sequences_set_the_stop_reason(
    bedrock: Factory, sim: SimulatorProcess
) -> None:
    client = bedrock()
    sim.set_scenario("meta.llama3-sim", reply="one two STOP three")

    capped = converse(client, inferenceConfig={"maxTokens": 3})
    stopped = converse(client, "meta.llama3-sim", inferenceConfig={"stopSequences": ["STOP"]})

    assert capped["stopReason"] == "max_tokens"
    assert capped["usage"]["outputTokens"] == 3
    assert stopped["stopReason"] == "stop_sequence"
    assert stopped["output"]["message"]["content"][0]["text"] == "one two "


def test_content_filter_is_a_stop_reason(bedrock: Factory, sim: SimulatorProcess) -> None:
    sim.set_scenario(MODEL, content_filter="prompt")

    result = converse(bedrock())

    assert result["stopReason"] == "content_filtered"
    assert result["output"]["message"]["content"] == []


# --------------------------------------------------------------------------- converse stream


def test_stream_is_incremental_and_ends_with_stop_and_metadata(
    bedrock: Factory, sim: SimulatorProcess
) -> None:
    sim.set_scenario(MODEL, tokens_per_second=20, reply_tokens=6)

    response = bedrock().converse_stream(modelId=MODEL, messages=MESSAGES, system=SYSTEM)
    arrivals, events = [], []
    for event in response["stream"]:
        events.append(event)
        if "contentBlockDelta" in event:
            arrivals.append(time.monotonic())

    kinds = [next(iter(e)) for e in events]
    assert kinds[0] == "messageStart"
    assert kinds[1:7] == ["contentBlockDelta"] * 6
    assert kinds[7:] == ["contentBlockStop", "messageStop", "metadata"]
    assert arrivals[-1] - arrivals[0] > 0.1  # 5 gaps of 50 ms: spread out, not one burst
    text = "".join(e["contentBlockDelta"]["delta"]["text"] for e in events[1:7])
    assert text.startswith(f"Hello from {MODEL}.")
    assert events[-2]["messageStop"]["stopReason"] == "end_turn"
    assert events[-1]["metadata"]["usage"] == {
        "inputTokens": PROMPT_TOKENS,
        "outputTokens": 6,
        "totalTokens": PROMPT_TOKENS + 6,
    }
    assert events[-1]["metadata"]["metrics"]["latencyMs"] >= 1
    assert sim.stats()["streams_completed"] == 1


def test_streamed_max_tokens(bedrock: Factory) -> None:
    events = stream_events(bedrock(), inferenceConfig={"maxTokens": 2})

    assert events[-2] == {"messageStop": {"stopReason": "max_tokens"}}
    assert events[-1]["metadata"]["usage"]["outputTokens"] == 2


def test_drop_mid_stream_breaks_the_event_stream(bedrock: Factory, sim: SimulatorProcess) -> None:
    sim.set_scenario(MODEL, drop_after_tokens=2)
    received: list[dict[str, Any]] = []

    response = bedrock().converse_stream(modelId=MODEL, messages=MESSAGES)
    with pytest.raises(ProtocolError):
        received.extend(response["stream"])  # keeps what arrived before the failure

    assert [next(iter(e)) for e in received] == ["messageStart"] + ["contentBlockDelta"] * 2
    assert sim.stats()["connections_dropped"] == 1


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (429, "throttlingException"),
        (503, "serviceUnavailableException"),
        (500, "internalServerException"),
        (424, "modelStreamErrorException"),
    ],
)
def test_mid_stream_failure_as_event_stream_exception(
    bedrock: Factory, sim: SimulatorProcess, status: int, code: str
) -> None:
    sim.set_scenario(MODEL, drop_after_tokens=1, drop_error_status=status)
    received: list[dict[str, Any]] = []

    response = bedrock().converse_stream(modelId=MODEL, messages=MESSAGES)
    with pytest.raises(EventStreamError) as info:
        received.extend(response["stream"])  # keeps what arrived before the failure

    assert len(received) == 2  # messageStart + one delta
    assert info.value.response["Error"]["Code"] == code
    assert info.value.response["Error"]["Message"]


def test_client_closing_a_stream_is_counted(bedrock: Factory, sim: SimulatorProcess) -> None:
    sim.set_scenario(MODEL, tokens_per_second=20, reply_tokens=200)

    stream = bedrock().converse_stream(modelId=MODEL, messages=MESSAGES)["stream"]
    for event in stream:
        if "contentBlockDelta" in event:
            break
    stream.close()

    stats = sim.wait_for_stats(lambda s: s["client_disconnects"] == 1)
    assert stats["streams_completed"] == 0


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("status", "scripted_code", "expected_code"),
    [
        (400, None, "ValidationException"),
        (403, None, "AccessDeniedException"),
        (404, None, "ResourceNotFoundException"),
        (408, None, "ModelTimeoutException"),
        (429, None, "ThrottlingException"),
        (429, "ModelNotReadyException", "ModelNotReadyException"),
        (500, None, "InternalServerException"),
        (503, None, "ServiceUnavailableException"),
    ],
)
def test_scripted_status_surfaces_as_aws_error_code(
    bedrock: Factory,
    sim: SimulatorProcess,
    status: int,
    scripted_code: str | None,
    expected_code: str,
) -> None:
    failure: dict[str, Any] = {"status": status}
    if scripted_code:
        failure["code"] = scripted_code
    client = bedrock()

    for call in (converse, stream_events):
        sim.set_scenario(MODEL, failures=[failure])
        with pytest.raises(ClientError) as info:
            call(client)
        assert info.value.response["Error"]["Code"] == expected_code
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
        assert info.value.response["Error"]["Message"]


def test_throttled_twice_then_ok(bedrock: Factory, sim: SimulatorProcess) -> None:
    sim.set_scenario(MODEL, failures=[{"status": 429, "count": 2}])
    client = bedrock()

    codes = []
    for _ in range(2):
        with pytest.raises(ClientError) as info:
            converse(client)
        codes.append(info.value.response["Error"]["Code"])
    result = converse(client)

    assert codes == ["ThrottlingException"] * 2
    assert result["stopReason"] == "end_turn"


def test_invalid_access_key_is_rejected(bedrock: Factory) -> None:
    with pytest.raises(ClientError) as info:
        converse(bedrock(key="sim-invalid-key"))

    assert info.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_malformed_conversation_is_a_validation_error(bedrock: Factory) -> None:
    with pytest.raises(ClientError) as info:
        bedrock().converse(modelId=MODEL, messages=[{"role": "robot", "content": [{"text": "x"}]}])

    assert info.value.response["Error"]["Code"] == "ValidationException"


# --------------------------------------------------------------------------- regions


def test_region_from_path_prefix_and_from_sigv4_scope(
    bedrock: Factory, sim: SimulatorProcess
) -> None:
    converse(bedrock("ap-south-1"))
    converse(bedrock("eu-west-1", path_prefix=False))
    converse(bedrock("eu-west-1", path_prefix=False))

    assert sim.stats()["requests_by_region"] == {"ap-south-1": 1, "eu-west-1": 2}


def test_region_scoped_scenario_applies_only_there(bedrock: Factory, sim: SimulatorProcess) -> None:
    sim.set_scenario(MODEL, region="ap-south-1", always_status=503)
    sim.set_scenario(MODEL, reply="from everywhere else")

    with pytest.raises(ClientError) as info:
        converse(bedrock("ap-south-1"))
    served = converse(bedrock("us-east-1"))

    assert info.value.response["Error"]["Code"] == "ServiceUnavailableException"
    assert served["output"]["message"]["content"][0]["text"] == "from everywhere else"
    assert set(sim.scenarios()) == {MODEL, f"{MODEL}@ap-south-1"}


def test_region_outage_fails_every_model_there_until_it_is_up(
    bedrock: Factory, sim: SimulatorProcess
) -> None:
    sim.set_region_down("us-east-1")
    east, west = bedrock("us-east-1"), bedrock("us-west-2")

    for model in (MODEL, "amazon.nova-lite-v1:0"):
        with pytest.raises(ClientError) as info:
            converse(east, model)
        assert info.value.response["Error"]["Code"] == "ServiceUnavailableException"
        assert "us-east-1" in info.value.response["Error"]["Message"]
    assert converse(west)["stopReason"] == "end_turn"
    assert sim.regions_down() == {"us-east-1": {"status": 503, "message": None}}

    sim.set_region_up("us-east-1")

    assert converse(east)["stopReason"] == "end_turn"
    stats = sim.stats()
    assert stats["requests_by_region"] == {"us-east-1": 3, "us-west-2": 1}
    assert stats["responses_by_status"] == {"503": 2, "200": 2}


def test_region_outage_with_a_custom_status(bedrock: Factory, sim: SimulatorProcess) -> None:
    sim.set_region_down("ap-south-1", status=500)

    with pytest.raises(ClientError) as info:
        stream_events(bedrock("ap-south-1"))

    assert info.value.response["Error"]["Code"] == "InternalServerException"


# --------------------------------------------------------------------------- embeddings


def test_titan_embeddings_via_invoke_model(bedrock: Factory) -> None:
    client = bedrock()

    def embed(text: str, **extra: Any) -> dict[str, Any]:
        body = json.dumps({"inputText": text, **extra})
        response = client.invoke_model(modelId="amazon.titan-embed-text-v2:0", body=body)
        return json.loads(response["body"].read())

    first, again, short = embed("hello world"), embed("hello world"), embed("hi", dimensions=256)

    assert len(first["embedding"]) == 1024
    assert first["inputTextTokenCount"] == 2
    assert first["embedding"] == again["embedding"]
    assert len(short["embedding"]) == 256
    assert math.isclose(math.sqrt(sum(x * x for x in first["embedding"])), 1.0, rel_tol=1e-6)


# --------------------------------------------------------------------------- tools and images

WEATHER_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city"],
}
TOOL_CONFIG = {
    "tools": [
        {
            "toolSpec": {
                "name": "get_weather",
                "description": "Weather in a city",
                "inputSchema": {"json": WEATHER_SCHEMA},
            }
        },
        {"toolSpec": {"name": "get_time", "inputSchema": {"json": {"type": "object"}}}},
    ]
}
PNG_BYTES = b"\x89PNG\r\n\x1a\n-simulated-image"


def tool_round(client: Any, result: str = "18C and sunny") -> list[dict[str, Any]]:
    """The conversation after one call of get_weather and its result."""
    call = converse(client, toolConfig=TOOL_CONFIG)["output"]["message"]["content"][0]
    return [
        *MESSAGES,
        {"role": "assistant", "content": [call]},
        {
            "role": "user",
            "content": [
                {
                    "toolResult": {
                        "toolUseId": call["toolUse"]["toolUseId"],
                        "content": [{"text": result}],
                        "status": "success",
                    }
                }
            ],
        },
    ]


def test_converse_calls_the_first_tool_with_schema_valid_input(bedrock: Factory) -> None:
    result = converse(bedrock(), toolConfig=TOOL_CONFIG)

    assert result["stopReason"] == "tool_use"
    (block,) = result["output"]["message"]["content"]
    use = block["toolUse"]
    assert use["name"] == "get_weather"
    assert use["toolUseId"].startswith("tooluse_")
    assert use["input"] == {"city": "sample", "days": 42}
    assert result["usage"]["outputTokens"] == len(json.dumps(use["input"]).split())
    declared = len(json.dumps(TOOL_CONFIG["tools"]).split())
    assert result["usage"]["inputTokens"] == PROMPT_TOKENS + declared
    again = converse(bedrock(), toolConfig=TOOL_CONFIG)
    assert again["output"]["message"]["content"][0]["toolUse"]["toolUseId"] == use["toolUseId"]


def test_tool_choice_names_the_tool_and_any_requires_one(bedrock: Factory) -> None:
    choice = {"toolChoice": {"tool": {"name": "get_time"}}}
    named = converse(bedrock(), toolConfig={**TOOL_CONFIG, **choice})
    assert named["output"]["message"]["content"][0]["toolUse"]["name"] == "get_time"

    messages = tool_round(bedrock())
    forced = bedrock().converse(
        modelId=MODEL, messages=messages, toolConfig={**TOOL_CONFIG, "toolChoice": {"any": {}}}
    )
    assert forced["stopReason"] == "tool_use"


def test_converse_stream_sends_tool_use_start_input_pieces_and_tool_use_stop(
    bedrock: Factory,
) -> None:
    unary = converse(bedrock(), toolConfig=TOOL_CONFIG)["output"]["message"]["content"][0]
    events = stream_events(bedrock(), toolConfig=TOOL_CONFIG)

    kinds = [next(iter(e)) for e in events]
    pieces = [e["contentBlockDelta"] for e in events if "contentBlockDelta" in e]
    assert kinds[:2] == ["messageStart", "contentBlockStart"]
    assert kinds[-3:] == ["contentBlockStop", "messageStop", "metadata"]
    assert events[1]["contentBlockStart"] == {
        "start": {"toolUse": {"toolUseId": unary["toolUse"]["toolUseId"], "name": "get_weather"}},
        "contentBlockIndex": 0,
    }
    assert len(pieces) > 1 and all(p["contentBlockIndex"] == 0 for p in pieces)
    arguments = "".join(p["delta"]["toolUse"]["input"] for p in pieces)
    assert json.loads(arguments) == unary["toolUse"]["input"]
    assert events[-2] == {"messageStop": {"stopReason": "tool_use"}}
    assert events[-1]["metadata"]["usage"]["outputTokens"] == len(arguments.split())


def test_after_a_tool_result_the_answer_quotes_it(bedrock: Factory) -> None:
    messages = tool_round(bedrock())

    result = bedrock().converse(modelId=MODEL, messages=messages, toolConfig=TOOL_CONFIG)

    assert result["stopReason"] == "end_turn"
    assert "18C and sunny" in result["output"]["message"]["content"][0]["text"]


def test_tool_blocks_without_tool_config_are_refused(bedrock: Factory) -> None:
    messages = tool_round(bedrock())

    with pytest.raises(ClientError) as info:
        bedrock().converse(modelId=MODEL, messages=messages)

    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "toolConfig field must be defined" in info.value.response["Error"]["Message"]


def test_a_tool_result_for_no_earlier_tool_use_is_refused(bedrock: Factory) -> None:
    messages = tool_round(bedrock())
    messages[-1]["content"][0]["toolResult"]["toolUseId"] = "tooluse_unknown"

    with pytest.raises(ClientError) as info:
        bedrock().converse(modelId=MODEL, messages=messages, toolConfig=TOOL_CONFIG)

    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "tooluse_unknown" in info.value.response["Error"]["Message"]


def test_an_unanswered_tool_use_is_refused(bedrock: Factory) -> None:
    messages = tool_round(bedrock())
    messages[-1] = {"role": "user", "content": [{"text": "never mind"}]}

    with pytest.raises(ClientError) as info:
        bedrock().converse(modelId=MODEL, messages=messages, toolConfig=TOOL_CONFIG)

    assert "Expected toolResult blocks" in info.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    "tool_config",
    [
        {"tools": [{"toolSpec": {"name": "bad name", "inputSchema": {"json": {}}}}]},
        {"tools": [{"toolSpec": {"name": "a", "inputSchema": {"json": {"type": "string"}}}}]},
        {**TOOL_CONFIG, "toolChoice": {"tool": {"name": "nobody"}}},
    ],
)
def test_malformed_tool_config_is_a_validation_error(
    bedrock: Factory, tool_config: dict[str, Any]
) -> None:
    with pytest.raises(ClientError) as info:
        converse(bedrock(), toolConfig=tool_config)

    assert info.value.response["Error"]["Code"] == "ValidationException"


def test_an_inline_image_counts_and_is_noted(bedrock: Factory) -> None:
    image = {"image": {"format": "png", "source": {"bytes": PNG_BYTES}}}
    messages = [{"role": "user", "content": [MESSAGES[0]["content"][0], image]}]

    result = bedrock().converse(modelId=MODEL, messages=messages, system=SYSTEM)

    text = result["output"]["message"]["content"][0]["text"]
    assert text.endswith(" [saw 1 image(s): image/png]")
    assert result["usage"]["inputTokens"] == PROMPT_TOKENS + 85


def test_an_unknown_image_format_is_a_validation_error(bedrock: Factory) -> None:
    image = {"image": {"format": "bmp", "source": {"bytes": PNG_BYTES}}}
    messages = [{"role": "user", "content": [{"text": "look"}, image]}]

    with pytest.raises(ClientError) as info:
        bedrock().converse(modelId=MODEL, messages=messages)

    assert info.value.response["Error"]["Code"] == "ValidationException"
    assert "format" in info.value.response["Error"]["Message"]


def test_malformed_arguments_fault_sends_the_text_as_input(
    bedrock: Factory, sim: SimulatorProcess
) -> None:
    sim.set_scenario(MODEL, output_fault="malformed_arguments")

    use = converse(bedrock(), toolConfig=TOOL_CONFIG)["output"]["message"]["content"][0]

    assert use["toolUse"]["input"] == '{"unterminated": '


def test_a_truncated_tool_stream_ends_without_message_stop(
    bedrock: Factory, sim: SimulatorProcess
) -> None:
    sim.set_scenario(MODEL, truncate_after_chunks=1)

    events = stream_events(bedrock(), toolConfig=TOOL_CONFIG)

    assert [next(iter(e)) for e in events] == [
        "messageStart",
        "contentBlockStart",
        "contentBlockDelta",
    ]
