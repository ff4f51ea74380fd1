"""TLS (and mutual TLS) credentials for the gRPC listener, rotated without a restart.

Why grpc's dynamic SSL credentials: grpc asks a fetcher before every new TLS handshake
whether the certificate changed. Answering with a new configuration moves new connections
to the new certificate while open connections, and the streams on them, keep the session
they negotiated — nothing is dropped. The files and their checks are
``server/kernel/tls.py``'s business; this module only speaks grpc.
"""

from __future__ import annotations

import grpc

from server.kernel.config import TlsConfig
from server.kernel.tls import CertificateReloader, TlsFiles, TlsMaterial

__all__ = ["certificate_configuration", "listener_credentials"]


def certificate_configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
    """The material as grpc takes it; the client CA (mTLS) travels with each configuration,
    so a rotated CA bundle is picked up like a rotated certificate."""
    return grpc.ssl_server_certificate_configuration(
        [(material.private_key, material.certificate_chain)],
        root_certificates=material.client_ca)


def listener_credentials(config: TlsConfig) -> tuple[grpc.ServerCredentials,
                                                     CertificateReloader]:
    """Credentials for ``add_secure_port`` and the reloader behind them (whose
    ``request_reload`` SIGHUP calls). A file set unusable at start raises
    ``TlsMaterialError``: the server must not start without its certificate."""
    reloader = CertificateReloader(
        TlsFiles(config.cert_file, config.key_file, config.client_ca_file),
        watch=config.reload)

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        # Runs on a grpc thread before each handshake; None keeps the configuration in force.
        material = reloader.poll()
        return None if material is None else certificate_configuration(material)

    credentials = grpc.dynamic_ssl_server_credentials(
        certificate_configuration(reloader.current), fetch,
        require_client_authentication=reloader.mutual)
    return credentials, reloader
