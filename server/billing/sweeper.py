"""Releases expired holds, so money reserved by a crashed or abandoned call comes back.

Every gateway process runs one; they may overlap freely because finishing a hold is
exactly-once in the database (the open-hold row is deleted under the wallet's lock).
"""

from __future__ import annotations

import asyncio
import logging

from server.billing.ledger import Ledger


class HoldSweeper:
    def __init__(self, ledger: Ledger, interval_s: float,
                 logger: logging.Logger | None = None) -> None:
        self._ledger = ledger
        self._interval_s = interval_s
        self._log = logger or logging.getLogger("llmgw.billing.sweeper")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="hold-sweeper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval_s)
            try:
                expired = await self._ledger.expire_due()
            except Exception as exc:  # noqa: BLE001 - keep sweeping after a database hiccup
                self._log.warning("hold sweep failed: %s", exc)
                continue
            if expired:
                self._log.info("released expired holds", extra={"count": expired})
