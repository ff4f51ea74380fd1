"""Health, graceful shutdown and start-up against real processes."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc

from tests.support.gateway import (
    GatewayProcess,
    bearer,
    free_port,
    raw_test_config,
    running_gateway,
)


async def test_not_serving_while_the_database_is_unreachable(simulator, data_dir):
    raw = raw_test_config(simulator.base_url, data_dir)
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    async with running_gateway(raw, dead) as gw:
        async with grpc.aio.insecure_channel(gw.target) as channel:
            response = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=5)
        assert response.status == health_pb2.HealthCheckResponse.NOT_SERVING
        assert gw.metric("llmgw_database_up") == 0


def test_sigterm_lets_an_in_flight_stream_finish(simulator, pg_url, tmp_path: Path):
    simulator.set_scenario("drain-stream", tokens_per_second=10, reply_tokens=15)
    raw = raw_test_config(simulator.base_url, tmp_path, database={"url": pg_url},
                          server={"grace_period_s": 10})
    with GatewayProcess(raw, tmp_path) as gw:
        channel = grpc.insecure_channel(gw.target)
        stub = pb_grpc.GenerationServiceStub(channel)
        stream = stub.StreamGenerate(pb.StreamGenerateRequest(
            messages=[pb.Message(role="user", content="hi")],
            targets=[pb.Target(provider="simulator", model="drain-stream")]),
            metadata=bearer("generate"), timeout=20)
        events = [next(stream)]  # the stream is running
        statuses: list[int] = []

        def watch_health() -> None:
            with grpc.insecure_channel(gw.target) as probe:
                for _ in range(20):
                    try:
                        statuses.append(health_pb2_grpc.HealthStub(probe).Check(
                            health_pb2.HealthCheckRequest(), timeout=1).status)
                    except grpc.RpcError:
                        return
                    time.sleep(0.05)

        gw.signal(signal.SIGTERM)
        watcher = threading.Thread(target=watch_health)
        watcher.start()
        events.extend(stream)  # must complete normally despite SIGTERM
        watcher.join()
        channel.close()
        assert events[-1].WhichOneof("event") == "end"
        assert sum(1 for e in events if e.WhichOneof("event") == "delta") == 15
        assert gw.process is not None and gw.process.wait(15) == 0
        assert health_pb2.HealthCheckResponse.SERVING not in statuses


def test_new_calls_are_refused_after_drain_starts(simulator, pg_url, tmp_path: Path):
    raw = raw_test_config(simulator.base_url, tmp_path, database={"url": pg_url},
                          server={"grace_period_s": 2})
    with GatewayProcess(raw, tmp_path) as gw:
        gw.signal(signal.SIGTERM)
        assert gw.process is not None and gw.process.wait(15) == 0
        with grpc.insecure_channel(gw.target) as channel, pytest.raises(grpc.RpcError) as caught:
            pb_grpc.GenerationServiceStub(channel).ListModels(
                pb.ListModelsRequest(), metadata=bearer("generate"), timeout=2)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


def test_workers_share_the_port_and_metrics_are_aggregated(simulator, pg_url, tmp_path: Path):
    raw = raw_test_config(simulator.base_url, tmp_path, database={"url": pg_url})
    with GatewayProcess(raw, tmp_path, workers=2) as gw:
        for _ in range(20):
            # A new channel per call: connections spread over the workers (SO_REUSEPORT).
            with grpc.insecure_channel(gw.target) as channel:
                pb_grpc.GenerationServiceStub(channel).ListModels(
                    pb.ListModelsRequest(), metadata=bearer("generate"), timeout=10)
        text = gw.metrics_text()
    served = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith('llmgw_rpc_total{') and 'method="ListModels"' in line
              and 'code="OK"' in line]
    assert sum(served) == 20
