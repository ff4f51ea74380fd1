"""The gRPC listener's TLS material: read the certificate, its key and (for mutual TLS) the
client CA from files, check that they belong together, and notice when the files change.

Why this lives apart from grpc: what makes a set of files usable (readable, parsable, the
key is the certificate's) and when to re-read them are questions about files, answerable
and testable without a server; ``server/tls.py`` turns the material into credentials.

Why a bad new set is never fatal: certificates are rotated on a live server, often by
tools that write the certificate and the key one after the other. A set that fails the
checks (half written, key of another certificate, unreadable) is logged once and the set
in force is kept, so rotation can at worst delay, never break, new connections.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)

__all__ = ["CertificateReloader", "TlsFiles", "TlsMaterial", "TlsMaterialError",
           "load_material"]

log = logging.getLogger("llmgw.tls")


@dataclass(frozen=True)
class TlsFiles:
    """Where the listener's TLS files are; ``client_ca_file`` set means mutual TLS."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def named(self) -> list[tuple[str, Path]]:
        """(configuration key, path) of every file of the set."""
        found = [("cert_file", self.cert_file), ("key_file", self.key_file)]
        if self.client_ca_file is not None:
            found.append(("client_ca_file", self.client_ca_file))
        return found

    def unreadable(self) -> list[TlsMaterialError]:
        """Every file that cannot be read, so one error message can name them all."""
        found = []
        for key, path in self.named():
            try:
                _read(key, path)
            except TlsMaterialError as exc:
                found.append(exc)
        return found


class TlsMaterialError(ValueError):
    """One file of the set cannot be used; ``key`` is its configuration key (cert_file,
    key_file or client_ca_file), so an error at start-up names what to fix."""

    def __init__(self, key: str, path: Path, reason: str) -> None:
        super().__init__(f"{key} {path}: {reason}")
        self.key = key
        self.path = path


@dataclass(frozen=True)
class TlsMaterial:
    """One checked set of PEM bytes, as grpc takes them. ``digest`` identifies the set:
    files touched or rewritten with the same bytes are not a rotation."""

    certificate_chain: bytes
    private_key: bytes = field(repr=False)
    client_ca: bytes | None
    digest: str
    subject: str
    not_valid_after: datetime


def _read(key: str, path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsMaterialError(key, path, f"cannot be read ({exc.strerror or exc})") from None
    if not data.strip():
        raise TlsMaterialError(key, path, "is empty")
    return data


def _certificates(key: str, path: Path, data: bytes) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        raise TlsMaterialError(key, path, "holds no PEM certificate") from None


def _public_key_der(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def load_material(files: TlsFiles) -> TlsMaterial:
    """Read and check the set: certificates parse, the key parses (unencrypted: grpc takes
    no passphrase) and is the first certificate's key, the client CA parses."""
    cert_pem = _read("cert_file", files.cert_file)
    key_pem = _read("key_file", files.key_file)
    leaf = _certificates("cert_file", files.cert_file, cert_pem)[0]
    try:
        private_key = load_pem_private_key(key_pem, password=None)
    except TypeError:
        raise TlsMaterialError("key_file", files.key_file,
                               "is encrypted; give the key without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TlsMaterialError("key_file", files.key_file,
                               "holds no usable PEM private key") from None
    if _public_key_der(private_key.public_key()) != _public_key_der(leaf.public_key()):
        raise TlsMaterialError("key_file", files.key_file,
                               f"is not the key of the certificate in {files.cert_file}")
    client_ca = None
    if files.client_ca_file is not None:
        client_ca = _read("client_ca_file", files.client_ca_file)
        _certificates("client_ca_file", files.client_ca_file, client_ca)
    digest = hashlib.sha256()
    for part in (cert_pem, key_pem, client_ca or b""):
        digest.update(hashlib.sha256(part).digest())
    return TlsMaterial(certificate_chain=cert_pem, private_key=key_pem, client_ca=client_ca,
                       digest=digest.hexdigest(), subject=leaf.subject.rfc4514_string(),
                       not_valid_after=leaf.not_valid_after_utc)


# What a file looked like at the last check: (device, inode, size, mtime), or why stat failed.
_Stamp = tuple[tuple[int, int, int, int] | str, ...]


class CertificateReloader:
    """The material in force, and the check grpc runs before each new TLS handshake.

    With ``watch``, ``poll`` stats the files (cheap: no read) and re-reads them only when
    a stamp (device, inode, size, mtime) moved — an atomic rename, a rewrite, a symlink
    swap as Kubernetes does for mounted secrets. ``request_reload`` (SIGHUP) makes the
    next ``poll`` re-read whatever the stamps say, which also covers a rewrite the stamps
    cannot see, and is the only way to reload when ``watch`` is off. A re-read only counts
    when the bytes differ (``TlsMaterial.digest``).

    Thread-safe: grpc calls ``poll`` from its own threads, several at once under a burst of
    connections. One of them checks; the others go on with the material in force rather
    than wait for file I/O.
    """

    def __init__(self, files: TlsFiles, *, watch: bool,
                 logger: logging.Logger | None = None) -> None:
        self._files = files
        self._watch = watch
        self._log = logger or log
        self._lock = threading.Lock()
        self._reread = threading.Event()
        self._seen = self._stamp()
        self._current = load_material(files)  # a bad set at start-up is the caller's error

    @property
    def current(self) -> TlsMaterial:
        return self._current

    @property
    def mutual(self) -> bool:
        """Clients must present a certificate signed by the client CA."""
        return self._files.client_ca_file is not None

    def request_reload(self) -> None:
        """Re-read the files at the next handshake even if they look unchanged. Only sets a
        flag, so it is safe from a signal handler."""
        self._reread.set()

    def poll(self) -> TlsMaterial | None:
        """New material when the files changed and pass the checks; None keeps the current.
        A failing set is logged once (until the files change again)."""
        if not self._watch and not self._reread.is_set():
            return None
        if not self._lock.acquire(blocking=False):
            return None
        try:
            forced = self._reread.is_set()
            self._reread.clear()
            stamp = self._stamp()
            if stamp == self._seen and not forced:
                return None
            self._seen = stamp
            try:
                material = load_material(self._files)
            except TlsMaterialError as exc:
                self._log.warning("TLS files not reloaded; the certificate in force stays: %s",
                                  exc)
                return None
            if material.digest == self._current.digest:
                return None
            self._current = material
            self._log.info("TLS certificate reloaded: %s, valid until %s", material.subject,
                           material.not_valid_after.isoformat())
            return material
        finally:
            self._lock.release()

    def _stamp(self) -> _Stamp:
        stamps: list[tuple[int, int, int, int] | str] = []
        for _, path in self._files.named():
            try:
                st = os.stat(path)
            except OSError as exc:
                stamps.append(f"{type(exc).__name__}: {exc.strerror}")
            else:
                stamps.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(stamps)
