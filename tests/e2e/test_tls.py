"""TLS and mutual TLS on the gRPC listener (`server.tls`), against real gateways with a
throwaway PKI (tests/support/tls.py): the Python client, grpcurl and Node over TLS, client
certificates required and checked at the handshake, certificate files rotated under a live
server (watched, or re-read on SIGHUP), and configuration errors naming the key."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from llmgateway.v1 import generation_pb2 as pb
from llmgateway.v1 import generation_pb2_grpc as pb_grpc
from llmgateway_client import Gateway, GatewayClient, TlsOptions, TokenMinter, Unavailable

from server.kernel.config import ConfigError, load_config
from server.kernel.tls import CertificateReloader, TlsFiles
from tests.e2e.test_cross_language import NODE_DIR, grpcurl_path, run
from tests.support.gateway import (
    AUDIENCE,
    ISSUER,
    ROOT,
    TEST_SECRET,
    RunningGateway,
    bearer,
    raw_test_config,
    running_gateway,
    token,
)
from tests.support.tls import (
    CertificateAuthority,
    Pki,
    TlsGatewayProcess,
    presented_serial,
)

needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")


def minter() -> TokenMinter:
    return TokenMinter(TEST_SECRET, subject="tls-test", scopes=["generate"], issuer=ISSUER,
                       audience=AUDIENCE)


def client(target: str, tls: TlsOptions) -> GatewayClient:
    """No retries: a refused handshake must show at once, not after backoff."""
    return GatewayClient(target, token_source=minter(), timeout_s=10, max_retries=0, tls=tls)


def rpcs_handled(gw: RunningGateway) -> float:
    """Every RPC that reached the server's interceptors, whatever its method and code."""
    return sum(sample.value for family in gw.registry.collect() if family.name == "llmgw_rpc"
               for sample in family.samples if sample.name == "llmgw_rpc_total")


async def serial_of(target: str, ca: CertificateAuthority,
                    client_files: tuple[Path, Path] | None = None) -> int:
    return await asyncio.to_thread(presented_serial, target, ca, client_files)


async def wait_for_serial(target: str, ca: CertificateAuthority, expected: int) -> None:
    deadline = time.monotonic() + 5
    while (seen := await serial_of(target, ca)) != expected:
        assert time.monotonic() < deadline, f"still presenting serial {seen}"
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
async def tls_gateway(simulator, pg_url, data_dir, pki) -> AsyncIterator[RunningGateway]:
    raw = raw_test_config(simulator.base_url, data_dir, server={"tls": pki.tls_config()})
    async with running_gateway(raw, pg_url) as gw:
        yield gw


@pytest.fixture(scope="module")
async def mtls_gateway(simulator, pg_url, data_dir, pki) -> AsyncIterator[RunningGateway]:
    raw = raw_test_config(simulator.base_url, data_dir,
                          server={"tls": pki.tls_config(mutual=True)})
    async with running_gateway(raw, pg_url) as gw:
        yield gw


# --- TLS: the server proves itself ---------------------------------------------------------


async def test_python_clients_generate_over_tls(tls_gateway, pki):
    async with client(tls_gateway.target, TlsOptions.from_files(ca_file=pki.ca_file)) as gw:
        result = await gw.generate("sim-chat", "Hello", max_output_tokens=5)
    assert result.text.startswith("Hello from sim-chat.")

    def sync_call() -> str:
        # The sync client, checking the certificate for a name it carries other than the
        # target's host (in a thread: the gateway serves on this test's event loop).
        tls = TlsOptions(root_certificates=pki.ca.pem, server_name="gateway.test")
        with Gateway(tls_gateway.target, token_source=minter(), timeout_s=10, tls=tls) as gw:
            return gw.generate("sim-chat", "Hello").text

    assert (await asyncio.to_thread(sync_call)).startswith("Hello from sim-chat.")


async def test_a_certificate_without_the_expected_name_is_refused(tls_gateway, pki):
    tls = TlsOptions(root_certificates=pki.ca.pem, server_name="elsewhere.test")
    async with client(tls_gateway.target, tls) as gw:
        with pytest.raises(Unavailable):
            await gw.list_models()


async def test_a_client_trusting_another_ca_is_refused(tls_gateway, pki):
    async with client(tls_gateway.target, TlsOptions(root_certificates=pki.other_ca.pem)) as gw:
        with pytest.raises(Unavailable):
            await gw.list_models()


async def test_a_plaintext_client_cannot_talk_to_a_tls_port(tls_gateway):
    before = rpcs_handled(tls_gateway)
    async with grpc.aio.insecure_channel(tls_gateway.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(),
                                                            timeout=5)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert rpcs_handled(tls_gateway) == before


async def test_grpcurl_lists_checks_health_and_generates_with_cacert(tls_gateway, pki):
    grpcurl = (grpcurl_path(), "-cacert", str(pki.ca_file))
    port = tls_gateway.port  # by name, as the README does: the certificate is for localhost
    code, out, err = await run(*grpcurl, f"localhost:{port}", "list")
    assert code == 0, err
    assert {"llmgateway.v1.GenerationService", "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection"} <= set(out.split())
    code, out, err = await run(*grpcurl, tls_gateway.target, "grpc.health.v1.Health/Check")
    assert code == 0, err
    assert json.loads(out) == {"status": "SERVING"}
    body = '{"model":"sim-chat","messages":[{"role":"user","content":"Hello"}]}'
    code, out, err = await run(*grpcurl, "-H", f"authorization: Bearer {token('generate')}",
                               "-d", body, tls_gateway.target,
                               "llmgateway.v1.GenerationService/Generate")
    assert code == 0, err
    assert json.loads(out)["text"].startswith("Hello from sim-chat.")


async def test_grpcurl_without_the_ca_does_not_trust_the_gateway(tls_gateway):
    code, _, err = await run(grpcurl_path(), tls_gateway.target, "list")
    assert code != 0
    assert "certificate" in err


@needs_node
async def test_node_consumer_streams_over_tls(tls_gateway, pki):
    code, out, err = await run("node", str(NODE_DIR / "consumer.js"), tls_gateway.target,
                               token("generate"), "sim-chat", "--ca", str(pki.ca_file))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1] == "DONE"
    found = [json.loads(line) for line in lines[:-1]]
    assert found[0]["event"] == "start" and found[-1]["event"] == "end"
    assert "".join(e["delta"]["text"] for e in found if e["event"] == "delta").startswith(
        "Hello from sim-chat.")


# --- mutual TLS: the client proves itself too ----------------------------------------------


async def test_mtls_admits_a_certificate_from_the_client_ca(mtls_gateway, pki):
    cert, key = pki.client_files
    tls = TlsOptions.from_files(ca_file=pki.ca_file, cert_file=cert, key_file=key)
    async with client(mtls_gateway.target, tls) as gw:
        result = await gw.generate("sim-chat", "Hello", max_output_tokens=5)
    assert result.text.startswith("Hello from sim-chat.")
    code, out, err = await run(grpcurl_path(), "-cacert", str(pki.ca_file), "-cert", str(cert),
                               "-key", str(key), mtls_gateway.target, "list")
    assert code == 0, err
    assert "llmgateway.v1.GenerationService" in out.split()


@pytest.mark.parametrize("who", ["no client certificate", "a certificate from another CA"])
async def test_mtls_refuses_at_the_handshake(mtls_gateway, pki, who):
    if who == "no client certificate":
        tls = TlsOptions(root_certificates=pki.ca.pem)
    else:
        cert, key = pki.stranger_files
        tls = TlsOptions.from_files(ca_file=pki.ca_file, cert_file=cert, key_file=key)
    before = rpcs_handled(mtls_gateway)
    async with client(mtls_gateway.target, tls) as gw:
        with pytest.raises(Unavailable):
            await gw.generate("sim-chat", "Hello")
    assert rpcs_handled(mtls_gateway) == before, "an RPC got past the handshake"
    cert, key = pki.client_files  # the same gateway counts an admitted call
    async with client(mtls_gateway.target, TlsOptions.from_files(
            ca_file=pki.ca_file, cert_file=cert, key_file=key)) as gw:
        await gw.list_models()
    assert rpcs_handled(mtls_gateway) == before + 1


async def test_grpcurl_without_a_client_certificate_is_refused(mtls_gateway, pki):
    # Under TLS 1.3 the server checks the client's certificate after the client thinks the
    # handshake is done, so grpcurl only sees connections closed until it gives up.
    code, out, _ = await run(grpcurl_path(), "-connect-timeout", "2", "-cacert",
                             str(pki.ca_file), mtls_gateway.target, "list")
    assert code != 0 and not out, f"listed services without a client certificate: {out}"


@needs_node
async def test_node_consumer_presents_its_certificate_to_an_mtls_gateway(mtls_gateway, pki):
    cert, key = pki.client_files
    code, out, err = await run("node", str(NODE_DIR / "consumer.js"), mtls_gateway.target,
                               token("generate"), "sim-chat", "--ca", str(pki.ca_file),
                               "--cert", str(cert), "--key", str(key),
                               "--server-name", "gateway.test")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == "DONE"
    code, _, err = await run("node", str(NODE_DIR / "consumer.js"), mtls_gateway.target,
                             token("generate"), "sim-chat", "--ca", str(pki.ca_file))
    assert code == 1 and "ERROR 14" in err  # UNAVAILABLE: no certificate, no call


# --- rotation: new connections get the new files, open ones carry on -----------------------


def slow_stream(model: str) -> pb.StreamGenerateRequest:
    return pb.StreamGenerateRequest(messages=[pb.Message(role="user", content="hi")],
                                    targets=[pb.Target(provider="simulator", model=model)])


async def test_rotation_reaches_new_connections_while_an_open_stream_continues(
        simulator, pg_url, data_dir, tmp_path):
    simulator.set_scenario("tls-rotation", tokens_per_second=10, reply_tokens=20)  # 2 s
    pki = Pki.create(tmp_path)
    raw = raw_test_config(simulator.base_url, data_dir, server={"tls": pki.tls_config()})
    async with running_gateway(raw, pg_url) as gw, grpc.aio.secure_channel(
            gw.target, grpc.ssl_channel_credentials(pki.ca.pem)) as old:
        stream = pb_grpc.GenerationServiceStub(old).StreamGenerate(
            slow_stream("tls-rotation"), metadata=bearer("generate"), timeout=20)
        first = await stream.read()
        assert first.WhichOneof("event") == "start"

        same_ca = pki.ca.issue_server()  # a renewal: new certificate, same CA
        same_ca.write(pki.server_cert, pki.server_key)
        await wait_for_serial(gw.target, pki.ca, same_ca.serial)

        new_ca = CertificateAuthority("the next CA")  # a new CA altogether
        renewed = new_ca.issue_server()
        renewed.write(pki.server_cert, pki.server_key)
        await wait_for_serial(gw.target, new_ca, renewed.serial)
        async with client(gw.target, TlsOptions(root_certificates=new_ca.pem)) as fresh:
            assert (await fresh.generate("sim-chat", "Hello")).text
        async with client(gw.target, TlsOptions(root_certificates=pki.ca.pem)) as stale:
            with pytest.raises(Unavailable):  # a new connection trusting only the old CA
                await stale.list_models()

        assert not stream.done(), "the stream ended before the rotations: make it slower"
        rest = []
        while (event := await stream.read()) is not grpc.aio.EOF:
            rest.append(event)
        assert rest[-1].WhichOneof("event") == "end"
        assert sum(1 for e in rest if e.WhichOneof("event") == "delta") == 20
        # The old connection, negotiated with the first certificate, still takes new calls:
        # had it reconnected, its CA could not have verified the new certificate.
        response = await pb_grpc.GenerationServiceStub(old).Generate(
            pb.GenerateRequest(model="sim-chat", messages=[pb.Message(role="user",
                                                                      content="Hi")]),
            metadata=bearer("generate"), timeout=10)
        assert response.text


async def test_a_bad_new_pair_is_logged_and_the_pair_in_force_kept(
        simulator, pg_url, data_dir, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="llmgw.tls")
    pki = Pki.create(tmp_path)
    raw = raw_test_config(simulator.base_url, data_dir, server={"tls": pki.tls_config()})
    async with running_gateway(raw, pg_url) as gw:
        assert await serial_of(gw.target, pki.ca) == pki.server.serial
        renewed = pki.ca.issue_server()
        pki.server_cert.write_bytes(renewed.cert)  # the key is not written yet
        assert await serial_of(gw.target, pki.ca) == pki.server.serial
        assert "is not the key of the certificate" in caplog.text
        pki.server_key.unlink()
        assert await serial_of(gw.target, pki.ca) == pki.server.serial
        assert "cannot be read" in caplog.text
        async with client(gw.target, TlsOptions(root_certificates=pki.ca.pem)) as gw_client:
            assert (await gw_client.generate("sim-chat", "Hello")).text  # still serving
        pki.server_key.write_bytes(renewed.key)
        assert await serial_of(gw.target, pki.ca) == renewed.serial
        assert "TLS certificate reloaded" in caplog.text


def test_sighup_rereads_the_files_when_watching_is_off(simulator, pg_url, tmp_path):
    pki = Pki.create(tmp_path)
    raw = raw_test_config(simulator.base_url, tmp_path, database={"url": pg_url},
                          server={"tls": pki.tls_config(reload=False)})
    with TlsGatewayProcess(raw, tmp_path,
                           credentials=grpc.ssl_channel_credentials(pki.ca.pem)) as gw:
        assert presented_serial(gw.target, pki.ca) == pki.server.serial
        renewed = pki.ca.issue_server()
        renewed.write(pki.server_cert, pki.server_key)
        assert presented_serial(gw.target, pki.ca) == pki.server.serial  # not watched
        gw.signal(signal.SIGHUP)
        deadline = time.monotonic() + 5
        while presented_serial(gw.target, pki.ca) != renewed.serial:
            assert time.monotonic() < deadline, "SIGHUP did not reload the certificate"
            time.sleep(0.05)
        assert gw.process is not None and gw.process.poll() is None  # SIGHUP did not kill it


# --- the files: checked at load, re-read only when they change -----------------------------


def load_error(folder: Path, tls: dict[str, str]) -> str:
    path = folder / "gateway.yaml"
    path.write_text(json.dumps({"server": {"tls": tls}}))  # JSON is YAML
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    return str(caught.value)


def test_plaintext_unless_a_tls_section_is_given(tmp_path):
    path = tmp_path / "plain.yaml"
    path.write_text("server: {port: 50051}\n")
    assert load_config(path, environ={}).server.tls is None


def test_tls_configuration_errors_name_the_key(tmp_path, pki):
    assert "server.tls.key_file: Field required" in load_error(
        tmp_path, {"cert_file": str(pki.server_cert)})
    unreadable = load_error(tmp_path, {"cert_file": str(tmp_path / "nope.pem"),
                                       "key_file": str(tmp_path / "nope-key.pem")})
    assert f"cert_file {tmp_path / 'nope.pem'}: cannot be read" in unreadable
    assert f"key_file {tmp_path / 'nope-key.pem'}: cannot be read" in unreadable
    mismatched = load_error(tmp_path, {"cert_file": str(pki.server_cert),
                                       "key_file": str(pki.client_files[1])})
    assert "key_file" in mismatched and "is not the key of the certificate" in mismatched
    not_a_ca = load_error(tmp_path, {**pki.tls_config(), "client_ca_file": str(pki.server_key)})
    assert "client_ca_file" in not_a_ca and "holds no PEM certificate" in not_a_ca


def test_the_reloader_takes_only_changed_bytes(tmp_path):
    pki = Pki.create(tmp_path)
    reloader = CertificateReloader(TlsFiles(pki.server_cert, pki.server_key), watch=True)
    assert reloader.poll() is None
    pki.server.write(pki.server_cert, pki.server_key)  # rewritten with the same bytes
    assert reloader.poll() is None
    renewed = pki.ca.issue_server()
    renewed.write(pki.server_cert, pki.server_key)
    material = reloader.poll()
    assert material is not None and material.certificate_chain == renewed.cert
    assert reloader.current is material and reloader.poll() is None


def test_without_watching_only_a_requested_reload_rereads(tmp_path):
    pki = Pki.create(tmp_path)
    reloader = CertificateReloader(TlsFiles(pki.server_cert, pki.server_key), watch=False)
    renewed = pki.ca.issue_server()
    renewed.write(pki.server_cert, pki.server_key)
    assert reloader.poll() is None
    reloader.request_reload()  # what SIGHUP does
    material = reloader.poll()
    assert material is not None and material.certificate_chain == renewed.cert
    assert reloader.poll() is None


def test_client_tls_options_refuse_half_a_client_certificate(pki):
    with pytest.raises(ValueError, match="go together"):
        TlsOptions(root_certificates=pki.ca.pem, certificate_chain=pki.client.cert)
    with pytest.raises(ValueError, match="not both"):
        GatewayClient("127.0.0.1:1", tls=TlsOptions(), root_certificates=pki.ca.pem)
    assert TlsOptions(server_name="gateway.test").channel_options() == (
        ("grpc.ssl_target_name_override", "gateway.test"),)


async def test_the_container_healthcheck_speaks_tls_and_mtls(tls_gateway, mtls_gateway, pki):
    """`python -m server.healthcheck` (the Dockerfile's HEALTHCHECK) with the CA from the
    environment, as a container would set it; a client certificate for mutual TLS."""
    base = [sys.executable, "-m", "server.healthcheck", "--timeout", "5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "LLMGW_HEALTHCHECK_CACERT": str(pki.ca_file)}
    cert, key = pki.client_files
    plain = {k: v for k, v in env.items() if not k.startswith("LLMGW_HEALTHCHECK_")}
    for target, extra, environ, healthy in (
            (f"localhost:{tls_gateway.port}", [], env, True),
            (f"localhost:{tls_gateway.port}", [], plain, False),  # plaintext to a TLS port
            (f"localhost:{mtls_gateway.port}", ["--cert", str(cert), "--key", str(key)], env,
             True)):
        code, out, err = await run(*base, "--target", target, *extra, env=environ)
        assert (code == 0) == healthy, (target, out, err)
        if healthy:
            assert out.strip() == "SERVING"
