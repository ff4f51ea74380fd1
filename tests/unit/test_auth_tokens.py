"""Service JWT authentication: what the gateway accepts, what it refuses and why."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import stat
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from server.auth import (
    AuthError,
    KeySet,
    Principal,
    TokenVerifier,
    load_or_create_dev_secret,
    mint_token,
    parse_authorization,
    require_scope,
)

ISSUER = "https://auth.internal.example"
AUDIENCE = "llm-gateway"
HS_SECRET = "test-shared-secret-" + "x" * 32


# --- key material -------------------------------------------------------------------------


def _private_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _public_pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def rsa_pem_file(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "billing-svc.pem"
    path.write_bytes(_public_pem(rsa_key))
    return path


@pytest.fixture
def ec_pem_file(tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey) -> Path:
    path = tmp_path / "search-svc.pem"
    path.write_bytes(_public_pem(ec_key))
    return path


@pytest.fixture
def keys(rsa_pem_file: Path, ec_pem_file: Path) -> KeySet:
    return KeySet.load(HS_SECRET, [rsa_pem_file, ec_pem_file])


@pytest.fixture
def verifier(keys: KeySet) -> TokenVerifier:
    return TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE)


def hs_token(**overrides) -> str:
    args = {
        "key": HS_SECRET,
        "subject": "chat-backend",
        "scopes": ["generate", "retrieve"],
        "issuer": ISSUER,
        "audience": AUDIENCE,
    }
    return mint_token(**(args | overrides))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**extra) -> dict:
    now = int(time.time())
    return {"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 600, **extra}


def _rejected(verifier: TokenVerifier, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    assert caught.value.kind == "unauthenticated"
    return caught.value


# --- accepted tokens ------------------------------------------------------------------------


def test_hs256_token_yields_subject_scopes_and_claims(verifier: TokenVerifier) -> None:
    principal = verifier.verify(hs_token(extra_claims={"team": "search"}))

    assert principal.subject == "chat-backend"
    assert principal.scopes == frozenset({"generate", "retrieve"})
    assert principal.claims["team"] == "search"
    assert principal.claims["iss"] == ISSUER


def test_rs256_token_verified_with_public_key_from_pem_file(
    verifier: TokenVerifier, rsa_key: rsa.RSAPrivateKey
) -> None:
    pem = _private_pem(rsa_key)
    by_kid = mint_token(
        key=pem,
        algorithm="RS256",
        kid="billing-svc",
        subject="billing",
        scopes=["charge"],
        issuer=ISSUER,
        audience=AUDIENCE,
    )
    no_kid = mint_token(
        key=pem,
        algorithm="RS256",
        subject="billing",
        scopes=["charge"],
        issuer=ISSUER,
        audience=AUDIENCE,
    )

    assert verifier.verify(by_kid).subject == "billing"  # kid defaults to the file stem
    assert verifier.verify(no_kid).scopes == {"charge"}  # the only RSA key: unambiguous


def test_es256_token_accepted(verifier: TokenVerifier, ec_key: ec.EllipticCurvePrivateKey) -> None:
    token = mint_token(
        key=_private_pem(ec_key),
        algorithm="ES256",
        kid="search-svc",
        subject="search",
        scopes=["retrieve"],
        issuer=ISSUER,
        audience=AUDIENCE,
    )

    assert verifier.verify(token).subject == "search"


def test_scopes_may_be_a_list_claim_and_service_may_stand_in_for_sub(
    verifier: TokenVerifier,
) -> None:
    token = jwt.encode(
        {
            k: v
            for k, v in _claims(service="ingest-worker", scopes=["ingest", "retrieve"]).items()
            if k != "sub"
        },
        HS_SECRET,
        algorithm="HS256",
    )

    principal = verifier.verify(token)

    assert principal.subject == "ingest-worker"
    assert principal.scopes == {"ingest", "retrieve"}


def test_jwks_file_with_two_keys_picks_the_key_named_by_kid(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, other_rsa_key: rsa.RSAPrivateKey
) -> None:
    jwks = {"keys": []}
    for kid, key in (("2024-q1", rsa_key), ("2024-q2", other_rsa_key)):
        jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        jwks["keys"].append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    verifier = TokenVerifier(KeySet.load(None, jwks_file=jwks_file), ISSUER, AUDIENCE)

    def signed(key: rsa.RSAPrivateKey, kid: str | None) -> str:
        return mint_token(
            key=_private_pem(key),
            algorithm="RS256",
            kid=kid,
            subject="svc",
            scopes=[],
            issuer=ISSUER,
            audience=AUDIENCE,
        )

    assert verifier.verify(signed(other_rsa_key, "2024-q2")).subject == "svc"
    assert verifier.verify(signed(rsa_key, "2024-q1")).subject == "svc"
    assert _rejected(verifier, signed(rsa_key, "2024-q2")).reason == "INVALID_TOKEN"
    # Two RSA keys and no kid: guessing would be key confusion by another name.
    assert _rejected(verifier, signed(rsa_key, None)).reason == "UNKNOWN_KEY"


def test_clock_skew_within_leeway_is_tolerated(verifier: TokenVerifier) -> None:
    now = int(time.time())
    token = hs_token(extra_claims={"exp": now - 10, "nbf": now + 10, "iat": now + 10})

    assert verifier.verify(token).subject == "chat-backend"


# --- refused tokens -------------------------------------------------------------------------


def test_expired_token_is_refused(verifier: TokenVerifier) -> None:
    token = hs_token(extra_claims={"exp": int(time.time()) - 120})

    assert _rejected(verifier, token).reason == "TOKEN_EXPIRED"


def test_token_not_yet_valid_is_refused(verifier: TokenVerifier) -> None:
    token = hs_token(extra_claims={"nbf": int(time.time()) + 300})

    assert _rejected(verifier, token).reason == "TOKEN_NOT_YET_VALID"


def test_token_without_expiry_is_refused(verifier: TokenVerifier) -> None:
    claims = _claims()
    del claims["exp"]
    token = jwt.encode(claims, HS_SECRET, algorithm="HS256")

    assert _rejected(verifier, token).reason == "INVALID_TOKEN"


def test_wrong_audience_is_refused(verifier: TokenVerifier) -> None:
    assert _rejected(verifier, hs_token(audience="billing-api")).reason == "INVALID_AUDIENCE"


def test_wrong_issuer_is_refused(verifier: TokenVerifier) -> None:
    assert _rejected(verifier, hs_token(issuer="https://evil.example")).reason == "INVALID_ISSUER"


def test_wrong_secret_is_refused(verifier: TokenVerifier) -> None:
    token = hs_token(key="some-other-secret-that-is-long-enough-too")

    assert _rejected(verifier, token).reason == "INVALID_TOKEN"


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_alg_none_token_is_refused(verifier: TokenVerifier, alg: str) -> None:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = _b64(json.dumps(_claims(scope="admin")).encode())
    token = f"{header}.{payload}."

    assert _rejected(verifier, token).reason == "INVALID_TOKEN"


@pytest.mark.parametrize("with_kid", [True, False])
def test_hs256_token_signed_with_the_rsa_public_key_is_refused(
    verifier: TokenVerifier, rsa_pem_file: Path, with_kid: bool
) -> None:
    """HS/RS key confusion: the public PEM is public, so an attacker can HMAC with it."""
    header = {"alg": "HS256", "typ": "JWT"} | ({"kid": "billing-svc"} if with_kid else {})
    signing_input = (
        _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(_claims(scope="admin")).encode())
    )
    mac = hmac.new(rsa_pem_file.read_bytes(), signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{_b64(mac)}"

    assert _rejected(verifier, token).reason == "INVALID_TOKEN"


def test_hs256_token_is_refused_when_only_public_keys_are_configured(
    rsa_pem_file: Path,
) -> None:
    verifier = TokenVerifier(KeySet.load(None, [rsa_pem_file]), ISSUER, AUDIENCE)

    assert _rejected(verifier, hs_token()).reason == "UNKNOWN_KEY"


def test_unknown_kid_is_refused(verifier: TokenVerifier) -> None:
    assert _rejected(verifier, hs_token(kid="retired-2019")).reason == "UNKNOWN_KEY"


def test_token_without_subject_is_refused(verifier: TokenVerifier) -> None:
    claims = _claims()
    del claims["sub"]
    token = jwt.encode(claims, HS_SECRET, algorithm="HS256")

    assert _rejected(verifier, token).reason == "MISSING_SUBJECT"


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "....", "x" * 10_000])
def test_garbage_is_refused_as_invalid_token(verifier: TokenVerifier, token: str) -> None:
    assert _rejected(verifier, token).reason == "INVALID_TOKEN"


# --- scopes --------------------------------------------------------------------------------


def test_missing_scope_is_permission_denied(verifier: TokenVerifier) -> None:
    principal = verifier.verify(hs_token(scopes=["retrieve"]))

    verifier.require_scope(principal, "retrieve")
    with pytest.raises(AuthError) as caught:
        verifier.require_scope(principal, "billing.charge")

    assert caught.value.kind == "permission_denied"
    assert caught.value.reason == "MISSING_SCOPE"


def test_admin_scope_holds_every_scope() -> None:
    admin = Principal(subject="ops", scopes=frozenset({"admin"}), claims={})

    require_scope(admin, "billing.charge")
    require_scope(admin, "anything.at.all")


# --- the authorization header ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["Bearer tok.en.x", "bearer tok.en.x", "jwt tok.en.x", "JWT  tok.en.x"]
)
def test_bearer_and_jwt_schemes_are_accepted(value: str) -> None:
    assert parse_authorization(value) == "tok.en.x"


@pytest.mark.parametrize("value", [None, "", "   "])
def test_absent_authorization_is_missing_credentials(value: str | None) -> None:
    with pytest.raises(AuthError) as caught:
        parse_authorization(value)

    assert (caught.value.kind, caught.value.reason) == ("unauthenticated", "MISSING_CREDENTIALS")


@pytest.mark.parametrize("value", ["Basic dXNlcjpwdw==", "Bearer", "tok.en.x", "Bearer a b"])
def test_other_authorization_values_are_malformed(value: str) -> None:
    with pytest.raises(AuthError) as caught:
        parse_authorization(value)

    assert caught.value.reason == "MALFORMED_CREDENTIALS"
    assert "dXNlcjpwdw" not in caught.value.message


def test_jwt_scheme_token_verifies_end_to_end(verifier: TokenVerifier) -> None:
    token = hs_token()

    assert verifier.verify(parse_authorization(f"jwt {token}")).subject == "chat-backend"


# --- the verification cache -----------------------------------------------------------------


def test_repeated_token_is_served_from_the_cache(keys: KeySet) -> None:
    verifier = TokenVerifier(keys, ISSUER, AUDIENCE)
    token = hs_token()

    first = verifier.verify(token)
    second = verifier.verify(token)

    assert second is first
    assert verifier.cache_len == 1


def test_cache_never_returns_a_principal_past_its_expiry(keys: KeySet) -> None:
    verifier = TokenVerifier(keys, ISSUER, AUDIENCE, leeway_s=0)
    token = hs_token(ttl_s=1)
    expires_at = jwt.decode(token, options={"verify_signature": False})["exp"]

    assert verifier.verify(token).subject == "chat-backend"
    time.sleep(max(0.0, expires_at - time.time()) + 0.05)

    assert _rejected(verifier, token).reason == "TOKEN_EXPIRED"


def test_cache_expiry_follows_the_injected_clock(keys: KeySet) -> None:
    now = [time.time()]
    verifier = TokenVerifier(keys, ISSUER, AUDIENCE, clock=lambda: now[0])
    token = hs_token(ttl_s=60)
    first = verifier.verify(token)

    now[0] += 61  # past exp by the verifier's clock: the cached entry must not be used

    assert verifier.verify(token) is not first


def test_cache_is_bounded(keys: KeySet) -> None:
    verifier = TokenVerifier(keys, ISSUER, AUDIENCE, cache_size=2)

    for subject in ("a", "b", "c"):
        verifier.verify(hs_token(subject=subject))

    assert verifier.cache_len == 2


def test_failed_verifications_are_not_cached(verifier: TokenVerifier) -> None:
    token = hs_token(audience="someone-else")

    for _ in range(2):
        assert _rejected(verifier, token).reason == "INVALID_AUDIENCE"
    assert verifier.cache_len == 0


# --- messages are safe to return to clients -------------------------------------------------


def test_error_messages_never_contain_the_token(verifier: TokenVerifier) -> None:
    now = int(time.time())
    bad_tokens = [
        hs_token(extra_claims={"exp": now - 999}),
        hs_token(audience="nope"),
        hs_token(issuer="nope"),
        hs_token(kid="nope-kid-value"),
        hs_token(key="wrong-secret-wrong-secret-wrong-secret"),
        hs_token()[:-5] + "AAAAA",
    ]
    for token in bad_tokens:
        error = _rejected(verifier, token)
        for part in [token, *token.split(".")]:
            assert part not in error.message
            assert part not in str(error)
            assert part not in repr(error)
        assert "nope-kid-value" not in error.message
        assert HS_SECRET not in error.message


@settings(max_examples=60, deadline=None)
@given(garbage=st.text(min_size=24, max_size=300))
def test_arbitrary_input_is_refused_without_being_echoed(garbage: str) -> None:
    verifier = TokenVerifier(KeySet.load(HS_SECRET), ISSUER, AUDIENCE)

    with pytest.raises(AuthError) as caught:
        verifier.verify(garbage)

    assert caught.value.kind == "unauthenticated"
    assert garbage not in caught.value.message


# --- key configuration ----------------------------------------------------------------------


def test_private_key_pem_is_refused_as_configuration(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "oops.pem"
    path.write_bytes(_private_pem(rsa_key))

    with pytest.raises(ValueError, match="private key"):
        KeySet.load(None, [path])


def test_short_shared_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        KeySet.load("secret")


def test_symmetric_key_in_jwks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{"kty": "oct", "k": _b64(os.urandom(32)), "kid": "x"}]}))

    with pytest.raises(ValueError, match="not accepted"):
        KeySet.load(None, jwks_file=path)


def test_no_keys_at_all_is_refused() -> None:
    with pytest.raises(ValueError):
        KeySet.load(None)


def test_dev_secret_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    secret = load_or_create_dev_secret(data_dir)
    again = load_or_create_dev_secret(data_dir)

    assert secret == again
    assert len(base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))) == 32
    assert stat.S_IMODE((data_dir / "dev-jwt-secret").stat().st_mode) == 0o600
    verifier = TokenVerifier(KeySet.load(secret), ISSUER, AUDIENCE)
    assert verifier.verify(hs_token(key=secret)).subject == "chat-backend"


def test_mint_token_refuses_unsupported_algorithms() -> None:
    with pytest.raises(ValueError):
        mint_token(
            key=secrets.token_bytes(32),
            algorithm="none",
            subject="x",
            scopes=[],
            issuer=ISSUER,
            audience=AUDIENCE,
        )
