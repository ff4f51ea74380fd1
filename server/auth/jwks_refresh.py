"""When to fetch a JWKS URL, and what a fetched document may change.

Policy, in one place:

- **At start** the gateway fetches once (bounded by the fetch timeout). A failure is
  logged and is not fatal: the gateway serves with its static keys (if any) and retries.
- **In the background** it fetches every `refresh_s` after the last fetch. After a
  failure it retries sooner — `min_refresh_s` (at least 1 s), doubling per consecutive
  failure up to `refresh_s` — so a gateway that started while the identity provider was
  down picks the keys up quickly once it answers.
- **On demand**, when a token names a kid we do not know (a key published since the last
  fetch): at most one such fetch per `min_refresh_s` since the last fetch of any kind,
  and callers arriving while a fetch is in flight wait for that one rather than starting
  their own. Tokens with random kids therefore cost the identity provider nothing more.
- **A bad answer changes nothing.** Unreachable, timeout, non-200, oversized, not JSON,
  a key refused by the JWKS rules (`parse_jwks`), no signing key at all, or a kid that
  collides with a static key: the keys in force stay in force (logged as a warning).
  Keys are kept for as long as the endpoint stays unusable; there is no expiry.
- **A good answer replaces the fetched keys**: keys missing from it stop verifying.

No grpc here; the interceptor calls `refresh_for_unknown_key` on UNKNOWN_KEY.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from server.auth.jwks_http import JwksFetchError
from server.auth.keys import KeyConfigError, parse_jwks
from server.auth.rotating import RotatingVerifier

logger = logging.getLogger(__name__)

Fetch = Callable[[], Awaitable[bytes]]
"""One fetch of the JWKS document's bytes; raises JwksFetchError when there is none."""

REMOTE_KID_PREFIX = "jwks-url"
"""Name of a fetched JWK that has no kid: `jwks-url#<index>`."""


class JwksRefresher:
    """Keeps a `RotatingVerifier`'s remote keys in step with one JWKS endpoint."""

    def __init__(self, fetch: Fetch, verifier: RotatingVerifier, *, origin: str,
                 refresh_s: float, min_refresh_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if refresh_s <= 0 or min_refresh_s < 0:
            raise ValueError("refresh_s must be > 0 and min_refresh_s >= 0")
        self._fetch = fetch
        self._verifier = verifier
        self._origin = origin  # for logs: the URL without credentials or query
        self._refresh_s = refresh_s
        self._min_refresh_s = min_refresh_s
        self._clock = clock
        self._inflight: asyncio.Task[bool] | None = None
        self._last_attempt: float | None = None
        self._failures = 0  # consecutive; 0 after a success
        self.fetches = 0  # attempts made (observability, tests)

    async def refresh(self) -> bool:
        """Fetch now, or join the fetch in flight; True if it succeeded.

        The fetch runs in its own task behind a shield: a caller whose RPC is cancelled
        stops waiting but does not cancel the fetch the others are waiting for.
        """
        if self._inflight is None:
            self._last_attempt = self._clock()
            self.fetches += 1
            self._inflight = asyncio.create_task(self._fetch_and_apply(), name="jwks-fetch")
        return await asyncio.shield(self._inflight)

    async def refresh_for_unknown_key(self) -> None:
        """A token named a kid we do not know: fetch, unless rate-limited (see module doc).

        Returns once the keys are as fresh as the policy allows; the caller verifies again.
        """
        if self._inflight is not None:
            await asyncio.shield(self._inflight)
            return
        if self._last_attempt is not None and \
                self._clock() - self._last_attempt < self._min_refresh_s:
            return
        await self.refresh()

    async def run_forever(self) -> None:
        """The background task: fetch when due (first one at once if `refresh` was never
        called) until cancelled; cancelling it also cancels a fetch in flight."""
        try:
            while True:
                if self._last_attempt is not None:
                    wait = self._last_attempt + self._next_delay() - self._clock()
                    if wait > 0:
                        await asyncio.sleep(wait)
                        continue  # an on-demand fetch may have moved the due time
                await self.refresh()
        finally:
            if self._inflight is not None:
                self._inflight.cancel()

    def _next_delay(self) -> float:
        if not self._failures:
            return self._refresh_s
        first_retry = min(self._refresh_s, max(self._min_refresh_s, 1.0))
        return min(self._refresh_s, first_retry * 2 ** (self._failures - 1))

    async def _fetch_and_apply(self) -> bool:
        try:
            document = await self._fetch()
            keys = parse_jwks(document, origin=self._origin, kid_prefix=REMOTE_KID_PREFIX)
            if not keys:
                raise KeyConfigError(f"{self._origin} has no signing keys")
            changed = self._verifier.replace_remote_keys(keys)
        except (JwksFetchError, KeyConfigError) as exc:
            return self._failed(str(exc))
        except Exception as exc:  # a bug must not stop key rotation nor reach a caller
            logger.exception("JWKS refresh from %s failed unexpectedly", self._origin)
            return self._failed(type(exc).__name__)
        finally:
            self._inflight = None  # before any waiter resumes: the next call fetches anew
        if self._failures:
            logger.warning("JWKS endpoint %s answers again after %d failed fetches",
                           self._origin, self._failures)
        self._failures = 0
        if changed:
            logger.info("JWKS keys from %s now in force: %s", self._origin,
                        ", ".join(sorted(key.kid for key in keys)))
        return True

    def _failed(self, reason: str) -> bool:
        self._failures += 1
        logger.warning("JWKS refresh from %s failed (%s); the keys in force stay in force "
                       "(%d consecutive failures)", self._origin, reason, self._failures)
        return False
