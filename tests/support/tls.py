"""Throwaway PKI for TLS tests: certificate authorities that issue server and client
certificates in memory (``cryptography``; no network, no openssl binary), written to files
the way an operator's tooling would, and a probe that tells which certificate a listener
presents to a new connection.

EC P-256 keys: generated in milliseconds, so every test can have its own.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.support.gateway import ROOT, GatewayProcess

SERVER_NAMES = ("localhost", "gateway.test")  # plus the IP SAN 127.0.0.1


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())


@dataclass(frozen=True)
class Issued:
    """A certificate and its key, PEM, as the files hold them."""

    cert: bytes
    key: bytes
    serial: int

    def write(self, cert_file: Path, key_file: Path) -> None:
        """Replace both files atomically, certificate first (as rotation tools do: between
        the two renames the pair on disk does not match, which the server must survive)."""
        for path, data in ((cert_file, self.cert), (key_file, self.key)):
            staged = path.with_name(path.name + ".new")
            staged.write_bytes(data)
            os.replace(staged, path)


class CertificateAuthority:
    """A self-signed CA issuing short-lived server and client certificates."""

    def __init__(self, common_name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(self._key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(self._key, hashes.SHA256()))

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.pem)
        return path

    def _issue(self, common_name: str, usage: x509.ObjectIdentifier,
               sans: list[x509.GeneralName]) -> Issued:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(self.certificate.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return Issued(cert.public_bytes(Encoding.PEM), _key_pem(key), cert.serial_number)

    def issue_server(self, names: tuple[str, ...] = SERVER_NAMES) -> Issued:
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
        return self._issue(names[0], ExtendedKeyUsageOID.SERVER_AUTH, sans)

    def issue_client(self, common_name: str = "test-client") -> Issued:
        return self._issue(common_name, ExtendedKeyUsageOID.CLIENT_AUTH, [])


def presented_serial(target: str, ca: CertificateAuthority,
                     client: tuple[Path, Path] | None = None) -> int:
    """The serial of the certificate the listener shows a brand-new connection (a TLS
    handshake of our own, ALPN h2 as gRPC clients offer, with the client certificate and
    key files ``client`` for mutual TLS). Blocking: run it in a thread when the server
    shares the event loop."""
    host, port = target.rsplit(":", 1)
    context = ssl.create_default_context(cadata=ca.pem.decode())
    context.check_hostname = False
    context.set_alpn_protocols(["h2"])
    if client is not None:
        context.load_cert_chain(*client)
    with socket.create_connection((host, int(port)), timeout=5) as raw, \
            context.wrap_socket(raw) as conn:
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


class TlsGatewayProcess(GatewayProcess):
    """``llmgw serve`` with ``server.tls`` set: the parent's readiness probe speaks
    plaintext, which a TLS port never answers, so this one probes with ``credentials``."""

    def __init__(self, raw: dict[str, Any], workdir: Path, *,
                 credentials: grpc.ChannelCredentials, **kw: Any) -> None:
        super().__init__(raw, workdir, **kw)
        self._credentials = credentials

    def start(self, timeout_s: float = 30.0) -> TlsGatewayProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "serve", "--config", str(self._config_file),
             "--port", str(self.port), "--metrics-port", str(self.metrics_port)],
            cwd=ROOT, env=self._env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited: {self.process.stdout.read()}")  # type: ignore[union-attr]
            with grpc.secure_channel(self.target, self._credentials) as channel:
                try:
                    grpc.channel_ready_future(channel).result(timeout=0.5)
                    return self
                except grpc.FutureTimeoutError:
                    continue
        self.stop()
        raise RuntimeError("gateway did not start in time")


@dataclass(frozen=True)
class Pki:
    """The files a TLS test needs, in one folder: our CA, a server certificate it issued,
    a client certificate it issued, and a stranger (a client certificate from another CA)."""

    folder: Path
    ca: CertificateAuthority
    other_ca: CertificateAuthority
    server: Issued
    client: Issued
    stranger: Issued

    @classmethod
    def create(cls, folder: Path) -> Pki:
        ca, other_ca = CertificateAuthority("llmgw test CA"), CertificateAuthority("other CA")
        pki = cls(folder, ca, other_ca, ca.issue_server(), ca.issue_client(),
                  other_ca.issue_client("stranger"))
        ca.write(pki.ca_file)
        other_ca.write(pki.other_ca_file)
        pki.server.write(pki.server_cert, pki.server_key)
        pki.client.write(*pki.client_files)
        pki.stranger.write(*pki.stranger_files)
        return pki

    @property
    def ca_file(self) -> Path:
        return self.folder / "ca.pem"

    @property
    def other_ca_file(self) -> Path:
        return self.folder / "other-ca.pem"

    @property
    def server_cert(self) -> Path:
        return self.folder / "server.pem"

    @property
    def server_key(self) -> Path:
        return self.folder / "server-key.pem"

    @property
    def client_files(self) -> tuple[Path, Path]:
        return self.folder / "client.pem", self.folder / "client-key.pem"

    @property
    def stranger_files(self) -> tuple[Path, Path]:
        return self.folder / "stranger.pem", self.folder / "stranger-key.pem"

    def tls_config(self, *, mutual: bool = False, reload: bool = True) -> dict[str, Any]:
        """The ``server.tls`` section serving ``server`` (client CA: ours, when mutual)."""
        section: dict[str, Any] = {"cert_file": str(self.server_cert),
                                   "key_file": str(self.server_key), "reload": reload}
        if mutual:
            section["client_ca_file"] = str(self.ca_file)
        return section
