"""Keys fetched from a JWKS URL, part by part: the shared JWKS rules, the rotating verifier,
the refresh policy (single flight, rate limit, bad answers change nothing) and the bounded
HTTP fetch."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.auth.jwks_http import HttpJwksFetcher, JwksFetchError, redacted
from server.auth.jwks_refresh import JwksRefresher
from server.auth.keys import KeyConfigError, KeySet, parse_jwks
from server.auth.rotating import RotatingVerifier
from server.auth.tokens import AuthError, TokenVerifier
from tests.auth_jwks.jwks_server import jwks_endpoint, public_jwk, signed
from tests.support.gateway import AUDIENCE, ISSUER, TEST_SECRET


@pytest.fixture(scope="module")
def key_a() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key_b() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def document(**keys: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return json.dumps({"keys": [public_jwk(kid, key) for kid, key in keys.items()]}).encode()


def rotating(static: KeySet | None = None) -> RotatingVerifier:
    return RotatingVerifier(static or KeySet([], allow_empty=True),
                            lambda keys: TokenVerifier(keys, ISSUER, AUDIENCE))


def reason(verifier: RotatingVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    return caught.value.reason


class FakeFetch:
    """A JWKS endpoint in memory: answers `body`, or raises `error`, after `gate` opens."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.error: Exception | None = None
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> bytes:
        self.calls += 1
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.body


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- one set of JWKS rules for the file and the URL -----------------------------------------


def test_the_file_and_a_fetched_document_yield_the_same_keys(tmp_path: Path, key_a, key_b):
    body = document(a=key_a, b=key_b)
    path = tmp_path / "keys.json"
    path.write_bytes(body)

    from_file = KeySet.load(None, jwks_file=path)
    fetched = parse_jwks(body, origin="https://idp.example/jwks", kid_prefix="jwks-url")

    assert from_file.kids == {k.kid for k in fetched} == {"a", "b"}
    assert {k.algorithm for k in fetched} == {"RS256", "ES256"}


@pytest.mark.parametrize("jwk, message", [
    ({"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA", "kid": "x"},
     "not accepted"),
    ({"kty": "RSA", "n": 5, "e": [], "kid": "x"}, "not a valid RSA public key"),
    ({"kty": {"nested": 1}}, "not accepted"),
    ("a string", "not a JSON object"),
])
def test_untrusted_documents_are_refused_as_configuration_errors_never_crashes(jwk, message):
    with pytest.raises(KeyConfigError, match=message):
        parse_jwks(json.dumps({"keys": [jwk]}), origin="u", kid_prefix="p")


def test_private_material_and_a_mismatched_alg_are_refused(key_a):
    private = {**public_jwk("a", key_a), "d": "AQAB"}
    wrong_alg = {**public_jwk("a", key_a), "alg": "HS256"}
    for jwk in (private, wrong_alg):
        with pytest.raises(KeyConfigError):
            parse_jwks(json.dumps({"keys": [jwk]}), origin="u", kid_prefix="p")


def test_encryption_keys_are_skipped(key_a, key_b):
    keys = parse_jwks(json.dumps({"keys": [{**public_jwk("enc", key_a), "use": "enc"},
                                           public_jwk("sig", key_b)]}),
                      origin="u", kid_prefix="p")
    assert [k.kid for k in keys] == ["sig"]


# --- the rotating verifier ------------------------------------------------------------------


def test_new_keys_verify_and_removed_keys_stop_even_for_cached_tokens(key_a, key_b):
    verifier = rotating()
    token_a = signed("a", key_a)
    assert reason(verifier, token_a) == "UNKNOWN_KEY"

    assert verifier.replace_remote_keys(parse_jwks(document(a=key_a), origin="u",
                                                   kid_prefix="p"))
    assert verifier.verify(token_a).subject == "jwks-svc"  # now cached

    verifier.replace_remote_keys(parse_jwks(document(b=key_b), origin="u", kid_prefix="p"))
    assert reason(verifier, token_a) == "UNKNOWN_KEY"
    assert verifier.verify(signed("b", key_b)).subject == "jwks-svc"


def test_unchanged_keys_keep_the_verifier_and_its_cache(key_a):
    verifier = rotating()
    keys = parse_jwks(document(a=key_a), origin="u", kid_prefix="p")
    assert verifier.replace_remote_keys(keys) is True
    before = verifier._current
    assert verifier.replace_remote_keys(parse_jwks(document(a=key_a), origin="u",
                                                   kid_prefix="p")) is False
    assert verifier._current is before


def test_static_keys_stay_beside_fetched_ones_and_a_kid_collision_changes_nothing(key_a):
    from server.auth.tokens import mint_token

    verifier = rotating(KeySet.load(TEST_SECRET))
    hs = mint_token(key=TEST_SECRET, subject="svc", scopes=[], issuer=ISSUER, audience=AUDIENCE)
    verifier.replace_remote_keys(parse_jwks(document(a=key_a), origin="u", kid_prefix="p"))
    assert verifier.verify(hs).subject == "svc"

    with pytest.raises(KeyConfigError, match="duplicate"):
        verifier.replace_remote_keys(parse_jwks(document(hs256=key_a), origin="u",
                                                kid_prefix="p"))
    assert verifier.kids == {"hs256", "a"}
    assert verifier.verify(signed("a", key_a)).subject == "jwks-svc"


# --- the refresh policy ---------------------------------------------------------------------


def refresher(fetch: FakeFetch, verifier: RotatingVerifier, clock: Clock,
              min_refresh_s: float = 30.0) -> JwksRefresher:
    return JwksRefresher(fetch, verifier, origin="https://idp.example/jwks", refresh_s=300,
                         min_refresh_s=min_refresh_s, clock=clock)


async def test_concurrent_unknown_kids_share_one_fetch(key_a):
    fetch, verifier, clock = FakeFetch(document(a=key_a)), rotating(), Clock()
    keys = refresher(fetch, verifier, clock)
    fetch.gate.clear()

    waiting = [asyncio.create_task(keys.refresh_for_unknown_key()) for _ in range(50)]
    await asyncio.sleep(0.01)
    fetch.gate.set()
    await asyncio.gather(*waiting)

    assert fetch.calls == 1
    assert verifier.kids == {"a"}


async def test_on_demand_fetches_are_rate_limited_from_the_last_fetch(key_a):
    fetch, verifier, clock = FakeFetch(document(a=key_a)), rotating(), Clock()
    keys = refresher(fetch, verifier, clock, min_refresh_s=30)
    assert await keys.refresh()  # the start-up fetch

    clock.now += 29
    for _ in range(100):
        await keys.refresh_for_unknown_key()
    assert fetch.calls == 1

    clock.now += 1
    for _ in range(100):
        await keys.refresh_for_unknown_key()
    assert fetch.calls == 2


async def test_a_cancelled_waiter_does_not_cancel_the_shared_fetch(key_a):
    fetch, verifier, clock = FakeFetch(document(a=key_a)), rotating(), Clock()
    keys = refresher(fetch, verifier, clock)
    fetch.gate.clear()
    impatient = asyncio.create_task(keys.refresh_for_unknown_key())
    patient = asyncio.create_task(keys.refresh_for_unknown_key())
    await asyncio.sleep(0.01)
    impatient.cancel()
    fetch.gate.set()
    await patient
    assert verifier.kids == {"a"}


@pytest.mark.parametrize("answer", [
    JwksFetchError("HTTP 503"),
    b"<html>gateway timeout</html>",
    b'{"keys": "none"}',
    b'{"keys": []}',
    json.dumps({"keys": [{"kty": "oct", "k": "AAAA"}]}).encode(),
])
async def test_a_bad_answer_keeps_the_keys_in_force(key_a, answer, caplog):
    fetch, verifier, clock = FakeFetch(document(a=key_a)), rotating(), Clock()
    keys = refresher(fetch, verifier, clock)
    assert await keys.refresh()

    if isinstance(answer, Exception):
        fetch.error = answer
    else:
        fetch.body = answer
    assert await keys.refresh() is False

    assert verifier.kids == {"a"}
    assert verifier.verify(signed("a", key_a)).subject == "jwks-svc"
    assert "keys in force stay in force" in caplog.text


async def test_an_unexpected_error_is_logged_not_raised(key_a, caplog):
    fetch, verifier, clock = FakeFetch(document(a=key_a)), rotating(), Clock()
    fetch.error = RuntimeError("bug")
    assert await refresher(fetch, verifier, clock).refresh() is False
    assert "failed unexpectedly" in caplog.text


# --- the HTTP fetch -------------------------------------------------------------------------


async def test_the_fetch_returns_the_document(key_a):
    async with jwks_endpoint(a=key_a) as endpoint:
        body = await HttpJwksFetcher(endpoint.url, timeout_s=2)()
    assert json.loads(body)["keys"][0]["kid"] == "a"


async def test_the_fetch_is_bounded_in_size_time_and_status(key_a):
    async with jwks_endpoint(a=key_a) as endpoint:
        for chunked in (False, True):
            endpoint.body, endpoint.chunked = b" " * 5000, chunked
            with pytest.raises(JwksFetchError, match="larger than"):
                await HttpJwksFetcher(endpoint.url, timeout_s=2, max_bytes=4096)()
        endpoint.publish(a=key_a)
        endpoint.delay_s = 1.0
        with pytest.raises(JwksFetchError, match="within"):
            await HttpJwksFetcher(endpoint.url, timeout_s=0.2)()
        endpoint.publish(a=key_a)
        endpoint.status = 500
        with pytest.raises(JwksFetchError, match="HTTP 500"):
            await HttpJwksFetcher(endpoint.url, timeout_s=2)()
    with pytest.raises(JwksFetchError):  # nobody listening any more
        await HttpJwksFetcher(endpoint.url, timeout_s=2)()


def test_logged_urls_carry_no_credentials_or_query():
    assert redacted("https://user:pw@idp.example:8443/keys?token=s") == \
        "https://idp.example:8443/keys"


# --- configuration --------------------------------------------------------------------------


def test_jwks_url_settings_have_safe_defaults_and_refuse_non_http_urls():
    from pydantic import ValidationError

    from server.kernel.config import AuthConfig

    auth = AuthConfig(jwks_url="https://idp.example/.well-known/jwks.json")
    assert (auth.jwks_refresh_s, auth.jwks_min_refresh_s, auth.jwks_timeout_s) == (300, 30, 5)
    for bad in ("file:///etc/jwks.json", "https://", "idp.example/jwks"):
        with pytest.raises(ValidationError):
            AuthConfig(jwks_url=bad)
