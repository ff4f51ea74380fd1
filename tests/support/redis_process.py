"""A throwaway real `redis-server` for integration tests.

Foreground child process (not daemonized, so it dies with the test run's cleanup), no
persistence, on a free localhost port. `stop()` kills it like a crash would; `start()` brings
it back on the same port, which is how outage tests simulate Redis going away and returning.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self


class RedisProcess:
    def __init__(
        self,
        port: int | None = None,
        *,
        executable: str = "redis-server",
        startup_timeout_s: float = 10.0,
    ) -> None:
        resolved = shutil.which(executable)
        if resolved is None:
            raise RuntimeError(
                f"{executable!r} not found on PATH: integration tests need a real Redis. "
                "`make test` installs it (apt-get install -y redis-server)."
            )
        self._executable = resolved
        self.port = port or _free_port()
        self._startup_timeout_s = startup_timeout_s
        self._workdir = Path(tempfile.mkdtemp(prefix="llmgw-redis-"))
        self._log_path = self._workdir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> Self:
        """Start (or restart after `stop`) on `self.port`; returns once PING answers."""
        if self.running:
            return self
        command = [
            self._executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._workdir),
            "--logfile",
            str(self._log_path),
        ]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + self._startup_timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited at start-up: {self._log_tail()}")
            if _answers_ping(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING in time: {self._log_tail()}")

    def stop(self) -> None:
        """Kill the server (SIGKILL, as a crash) and wait for it to exit."""
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait(timeout=10)
        self._process = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _log_tail(self) -> str:
        try:
            return self._log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
            conn.sendall(b"PING\r\n")
            return conn.recv(64).startswith(b"+PONG")
    except OSError:
        return False
