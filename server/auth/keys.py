"""Verification keys for service JWTs.

A `KeySet` is the gateway's whole trust configuration: an optional HS256 shared secret plus
RS256/ES256 public keys from PEM files and/or a JWKS file, plus — when `auth.jwks_url` is
set — the keys last fetched from that URL. It is immutable; reloading keys means building a
new `KeySet` (and a new verifier, whose cache then starts empty; `server.auth.rotating`).

Each key is pinned to exactly one algorithm, chosen by the key's *type*, never by the token:

    shared secret -> HS256      RSA public key -> RS256      EC P-256 public key -> ES256

That pin is what defeats the two classic JWT attacks: `alg: none` (no key accepts it) and
HS/RS confusion, where an attacker signs an HS256 token using the RSA public key's PEM bytes
as the HMAC secret (an RSA key only ever verifies RS256, so the token is refused before any
HMAC is computed).

This module knows nothing of gRPC or of tokens' claims; `server.auth.tokens` uses it.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt import PyJWK
from jwt.exceptions import PyJWTError

if TYPE_CHECKING:
    from server.kernel.config import GatewayConfig

logger = logging.getLogger(__name__)

HS256: Final = "HS256"
RS256: Final = "RS256"
ES256: Final = "ES256"
SUPPORTED_ALGORITHMS: Final = frozenset({HS256, RS256, ES256})

DEFAULT_HS256_KID: Final = "hs256"
"""kid under which the shared secret is found when a token names it explicitly."""

MIN_HS256_SECRET_BYTES: Final = 32
"""RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits)."""

MIN_RSA_KEY_BITS: Final = 2048

DEV_SECRET_FILENAME: Final = "dev-jwt-secret"

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True)
class VerificationKey:
    """One key and the single algorithm it may verify."""

    kid: str
    algorithm: Literal["HS256", "RS256", "ES256"]
    key: bytes | PublicKey = field(repr=False)  # never print key material (logs leak it)


class KeyConfigError(ValueError):
    """The key configuration is unusable (message names the file; safe for operators)."""


class KeyLookupError(LookupError):
    """No key may verify a token; `reason` is one of the AuthError reasons."""

    def __init__(self, reason: Literal["UNKNOWN_KEY", "INVALID_TOKEN"], message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class KeySet:
    """Immutable set of verification keys, looked up by kid or by algorithm."""

    def __init__(self, keys: Iterable[VerificationKey], *, allow_empty: bool = False) -> None:
        """`allow_empty` is for a gateway whose keys all come from a JWKS URL: it starts
        (refusing every token as UNKNOWN_KEY) even when the first fetch fails."""
        by_kid: dict[str, VerificationKey] = {}
        by_alg: dict[str, list[VerificationKey]] = {}
        for key in keys:
            if key.algorithm not in SUPPORTED_ALGORITHMS:
                raise KeyConfigError(f"key {key.kid!r}: unsupported algorithm {key.algorithm!r}")
            if key.kid in by_kid:
                raise KeyConfigError(f"duplicate key id {key.kid!r}")
            by_kid[key.kid] = key
            by_alg.setdefault(key.algorithm, []).append(key)
        if not by_kid and not allow_empty:
            raise KeyConfigError("no JWT verification keys configured")
        self._by_kid: Mapping[str, VerificationKey] = by_kid
        self._by_alg: Mapping[str, tuple[VerificationKey, ...]] = {
            alg: tuple(group) for alg, group in by_alg.items()
        }

    @classmethod
    def load(
        cls,
        hs256_secret: str | None,
        public_key_files: Sequence[Path] = (),
        jwks_file: Path | None = None,
        *,
        hs256_kid: str = DEFAULT_HS256_KID,
        allow_empty: bool = False,
    ) -> KeySet:
        """Build a key set from configuration.

        `hs256_secret` must be at least 32 bytes (UTF-8). Each PEM file holds one RSA (≥2048
        bits) or EC P-256 public key, or an X.509 certificate carrying one; its kid is the
        file stem. A PEM holding a *private* key is refused: the gateway only verifies.
        `jwks_file` is a JSON Web Key Set of RSA/EC public keys (kid from the JWK, or
        `<file stem>#<index>` when absent); symmetric ("oct") JWKs are refused, JWKs whose
        `use` is not "sig" are skipped. Raises KeyConfigError (a ValueError) with an
        operator-facing message naming the offending file. `allow_empty`: see `__init__`.
        """
        keys: list[VerificationKey] = []
        if hs256_secret is not None:
            keys.append(_shared_secret_key(hs256_secret, hs256_kid))
        for path in public_key_files:
            path = Path(path)
            keys.append(_pem_key(path.stem, path))
        if jwks_file is not None:
            jwks_file = Path(jwks_file)
            keys.extend(parse_jwks(jwks_file.read_bytes(), origin=str(jwks_file),
                                   kid_prefix=jwks_file.stem))
        return cls(keys, allow_empty=allow_empty)

    def with_keys(self, extra: Iterable[VerificationKey]) -> KeySet:
        """A new set holding these keys and `extra` (a duplicate kid is a KeyConfigError).

        How static keys and keys fetched from a JWKS URL are combined: the static part
        never changes, the fetched part is replaced on every successful refresh.
        """
        return KeySet((*self._by_kid.values(), *extra), allow_empty=True)

    def select(self, algorithm: object, kid: object) -> VerificationKey:
        """The key that must verify a token whose header says `alg`/`kid`.

        With a kid: exactly that key, and the token's alg must be that key's algorithm.
        Without: the only key for the token's algorithm; none or several is a refusal.
        Messages never echo header values (they are attacker-controlled token content).
        """
        if not isinstance(algorithm, str) or algorithm not in SUPPORTED_ALGORITHMS:
            raise KeyLookupError("INVALID_TOKEN", "token algorithm is not accepted")
        if kid is not None:
            if not isinstance(kid, str):
                raise KeyLookupError("INVALID_TOKEN", "token key id is malformed")
            key = self._by_kid.get(kid)
            if key is None:
                raise KeyLookupError("UNKNOWN_KEY", "token is signed with an unknown key id")
            if key.algorithm != algorithm:
                raise KeyLookupError("INVALID_TOKEN", "token algorithm does not match its key")
            return key
        candidates = self._by_alg.get(algorithm, ())
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise KeyLookupError("UNKNOWN_KEY", "no configured key accepts the token algorithm")
        raise KeyLookupError(
            "UNKNOWN_KEY", "token has no key id and several configured keys could verify it"
        )

    @property
    def kids(self) -> frozenset[str]:
        return frozenset(self._by_kid)

    def __len__(self) -> int:
        return len(self._by_kid)

    def __repr__(self) -> str:
        listed = ", ".join(f"{k.kid}:{k.algorithm}" for k in self._by_kid.values())
        return f"KeySet({listed})"


def load_or_create_dev_secret(data_dir: Path) -> str:
    """The embedded default's HS256 secret: read `data_dir/dev-jwt-secret`, or create it.

    Created as 32 random bytes, URL-safe base64, mode 0600, so the zero-setup server still
    runs with authentication ON (the `llmgw token` CLI mints tokens with the same file).
    Creation is race-safe (O_EXCL): two processes starting together agree on one secret.
    """
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEV_SECRET_FILENAME
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_dev_secret(path)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(secret + "\n")
    os.chmod(path, 0o600)  # the umask cannot widen it, but be explicit about the intent
    logger.info("created development JWT secret at %s", path)
    return secret


def _read_dev_secret(path: Path) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        logger.warning("%s was readable by others (mode %o); restricting it to 0600", path, mode)
        os.chmod(path, 0o600)
    secret = path.read_text(encoding="ascii").strip()
    if len(secret.encode()) < MIN_HS256_SECRET_BYTES:
        raise KeyConfigError(f"{path} is empty or too short; delete it to generate a new secret")
    return secret


def _shared_secret_key(secret: str, kid: str) -> VerificationKey:
    material = secret.encode("utf-8")
    if len(material) < MIN_HS256_SECRET_BYTES:
        raise KeyConfigError(
            f"the HS256 secret must be at least {MIN_HS256_SECRET_BYTES} bytes long"
        )
    return VerificationKey(kid=kid, algorithm=HS256, key=material)


def _pem_key(kid: str, path: Path) -> VerificationKey:
    data = path.read_bytes()
    if b"PRIVATE KEY" in data:
        raise KeyConfigError(
            f"{path} contains a private key; give the gateway only the public key "
            "(openssl pkey -in key.pem -pubout)"
        )
    try:
        if b"CERTIFICATE" in data:
            public_key: Any = x509.load_pem_x509_certificate(data).public_key()
        else:
            public_key = load_pem_public_key(data)
    except ValueError as exc:
        raise KeyConfigError(f"{path} is not a PEM public key or certificate") from exc
    return _public_key(kid, public_key, origin=str(path))


def parse_jwks(document: bytes | str, *, origin: str, kid_prefix: str) -> list[VerificationKey]:
    """The signing keys of a JSON Web Key Set, validated as strictly as a PEM file.

    One parser for the JWKS file and the JWKS URL, so both accept exactly the same keys:
    RSA (≥2048 bits) and EC P-256 public keys only; `alg`, when present, must be the one
    the key type pins (RS256 / ES256); JWKs whose `use` is not "sig" are skipped; a
    symmetric ("oct") JWK or one carrying private material (`d`) refuses the whole set —
    publishing those is a mistake we surface rather than work around. A JWK without `kid`
    is named `<kid_prefix>#<index>`. Raises KeyConfigError naming `origin` (a file path or
    URL, never key material).
    """
    try:
        parsed = json.loads(document)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeyConfigError(f"{origin} is not valid JSON") from exc
    entries = parsed.get("keys") if isinstance(parsed, dict) else None
    if not isinstance(entries, list):
        raise KeyConfigError(f"{origin} is not a JWK Set (expected an object with a 'keys' list)")
    keys = []
    for index, jwk in enumerate(entries):
        where = f"{origin} key #{index}"
        if not isinstance(jwk, dict):
            raise KeyConfigError(f"{where} is not a JSON object")
        if jwk.get("use", "sig") != "sig":
            continue
        kty = jwk.get("kty")
        expected = {"RSA": RS256, "EC": ES256}.get(kty) if isinstance(kty, str) else None
        if expected is None:
            raise KeyConfigError(
                f"{where}: key type {kty!r} not accepted (RSA or EC only; the HS256 "
                "secret is configured separately)"
            )
        if jwk.get("alg", expected) != expected:
            raise KeyConfigError(f"{where}: alg {jwk.get('alg')!r} not accepted for a {kty} key")
        if "d" in jwk:
            raise KeyConfigError(
                f"{where} contains private key material; publish public keys only"
            )
        # Fetched JWKs are untrusted input: a wrong-typed member is a refusal, not a crash.
        try:
            public_key = PyJWK(jwk, algorithm=expected).key
        except (PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise KeyConfigError(f"{where} is not a valid {kty} public key") from exc
        kid = jwk.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise KeyConfigError(f"{where}: kid must be a string")
        keys.append(_public_key(kid or f"{kid_prefix}#{index}", public_key, origin=where))
    return keys


def _public_key(kid: str, public_key: object, *, origin: str) -> VerificationKey:
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_KEY_BITS:
            raise KeyConfigError(f"{origin}: RSA keys must have at least {MIN_RSA_KEY_BITS} bits")
        return VerificationKey(kid=kid, algorithm=RS256, key=public_key)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise KeyConfigError(f"{origin}: EC keys must use curve P-256 (ES256)")
        return VerificationKey(kid=kid, algorithm=ES256, key=public_key)
    raise KeyConfigError(f"{origin}: only RSA and EC P-256 public keys are accepted")


def jwt_secret(config: GatewayConfig, environ: Mapping[str, str]) -> str | None:
    """The HS256 secret: environment, then file, then the generated development secret."""
    auth = config.auth
    if auth.hs256_secret_env and environ.get(auth.hs256_secret_env):
        return environ[auth.hs256_secret_env]
    if auth.hs256_secret_file:
        return auth.hs256_secret_file.read_text().strip()
    if auth.dev_secret:
        return load_or_create_dev_secret(config.data_dir)
    return None
