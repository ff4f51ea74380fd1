"""A verifier whose keys can change while the gateway runs (keys fetched from a JWKS URL).

Verification stays synchronous and cheap: `verify` reads one attribute — the current
`TokenVerifier` — and calls it. A key change builds a whole new `TokenVerifier` and swaps
that attribute in one assignment (atomic under the GIL), so a call sees either the old
keys or the new ones, never a mix. The new verifier starts with an empty token cache: a
token verified with a key that has just been removed must not stay accepted from the cache.
When the keys did not change, nothing is swapped and the cache keeps its entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from cryptography.hazmat.primitives import serialization

from server.auth.keys import KeySet, VerificationKey
from server.auth.tokens import Principal, TokenVerifier

Fingerprint = frozenset[tuple[str, str, bytes]]


class RotatingVerifier:
    """Static keys (fixed for the process) plus remote keys (replaced as they rotate).

    `make_verifier` turns a `KeySet` into a `TokenVerifier` (issuer, audience, leeway and
    cache size are the caller's business, not this class's).
    """

    def __init__(self, static_keys: KeySet,
                 make_verifier: Callable[[KeySet], TokenVerifier]) -> None:
        self._static = static_keys
        self._make_verifier = make_verifier
        self._remote: Fingerprint = frozenset()
        self._current = make_verifier(static_keys)

    def verify(self, token: str) -> Principal:
        """The principal a token proves, or AuthError — with the keys in force right now."""
        return self._current.verify(token)

    def replace_remote_keys(self, keys: Iterable[VerificationKey]) -> bool:
        """Put `keys` in force in place of the previous remote keys; True if they changed.

        Raises KeyConfigError (and changes nothing) when they cannot sit beside the static
        keys, e.g. a fetched kid equal to a configured PEM file's stem.
        """
        keys = list(keys)
        fingerprint = _fingerprint(keys)
        if fingerprint == self._remote:
            return False
        verifier = self._make_verifier(self._static.with_keys(keys))
        self._current, self._remote = verifier, fingerprint
        return True

    @property
    def kids(self) -> frozenset[str]:
        """Every kid in force (for logs and tests)."""
        return frozenset(kid for kid, _, _ in self._remote) | self._static.kids


def _fingerprint(keys: Iterable[VerificationKey]) -> Fingerprint:
    """What identifies a set of keys: kid, algorithm and the public key's DER bytes.
    (Public key objects do not compare by value on every cryptography version.)"""
    out = set()
    for key in keys:
        material = key.key if isinstance(key.key, bytes) else key.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        out.add((key.kid, key.algorithm, material))
    return frozenset(out)
