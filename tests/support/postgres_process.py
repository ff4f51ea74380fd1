"""A Postgres of a test's own that it can stop and start (the shared `pg_url` one it may not).

Built on pgserver (the embedded Postgres the suite already uses): pgserver initialises the
data directory and starts the server; ``stop`` and ``start`` then drive the same server
with its own ``pg_ctl``, on the same Unix socket, so the URL stays valid across restarts.
A fast stop is what an operator's restart or a failover does to in-flight work: Postgres
terminates every backend (57P01 admin_shutdown) and removes its socket.
"""

from __future__ import annotations

import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Self

from server.kernel.db.migrate import upgrade

# argv: uid gid program args…: become that user, then exec the program.
_AS_USER = ("import os, sys; os.setgroups([]); os.setgid(int(sys.argv[2])); "
            "os.setuid(int(sys.argv[1])); os.execv(sys.argv[3], sys.argv[3:])")


class RestartablePostgres:
    """A migrated, private Postgres: ``url``, ``stop()``, ``start()``, ``close()``."""

    def __init__(self) -> None:
        import pgserver

        # Outside pytest's private tmp tree: as root, pgserver runs Postgres as an
        # unprivileged user that must be able to reach the folder (see tests/conftest.py).
        self._folder = Path(tempfile.mkdtemp(prefix="llmgw-pg-restart-"))
        self._folder.chmod(0o755)
        self._server = pgserver.get_server(self._folder / "pg", cleanup_mode="delete")
        info = self._server.get_postmaster_info()
        self._socket_dir = info.socket_dir
        self.url = self._server.get_uri()
        upgrade(self.url)
        self.running = True

    def _pg_ctl(self, args: list[str]) -> None:
        """Run pgserver's ``pg_ctl`` as the user that owns the data directory.

        Not with ``subprocess.run(user=…)`` as pgserver does: that forks the whole test
        process, and a fork while gRPC threads are busy can crash the child before it
        execs. Without ``user`` Python spawns with vfork + exec, and a tiny Python child
        changes user before exec'ing pg_ctl.
        """
        from pgserver._commands import POSTGRES_BIN_PATH

        command = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self._server.pgdata), *args]
        if self._server.system_user is not None:  # we are root: pgserver's user runs it
            owner = pwd.getpwnam(self._server.system_user)
            command = [sys.executable, "-c", _AS_USER, str(owner.pw_uid), str(owner.pw_gid),
                       *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {' '.join(args)} failed ({done.returncode}): "
                               f"{done.stdout}{done.stderr}")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: abort transactions, terminate backends); returns once
        it is down."""
        self._pg_ctl(["-w", "-m", mode, "stop"])
        self.running = False

    def start(self) -> None:
        """Start it again on the same socket; returns once it accepts connections."""
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self._socket_dir}",
                      "-l", str(self._server.log), "start"])
        self.running = True

    def close(self) -> None:
        """Stop the server and delete its data."""
        if not self.running:
            self.start()  # pgserver's own clean-up expects a running server
        self._server.cleanup()
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
