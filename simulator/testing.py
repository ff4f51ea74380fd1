"""Run the simulator as a subprocess and drive its control API — for tests, benches, demo.

A separate process (not an in-process server) so the code under test talks to it over
real sockets exactly as it would to a vendor, and so its event loop never competes
with the caller's.

    with SimulatorProcess() as sim:
        sim.set_scenario("gpt-4o", failures=[{"status": 429, "count": 2}])
        client = AsyncOpenAI(base_url=sim.openai_base_url, api_key=sim.api_key)

Pointing each official SDK at it:

    AsyncAnthropic(base_url=sim.anthropic_base_url, api_key=sim.api_key)
    genai.Client(api_key=sim.api_key,
                 http_options=types.HttpOptions(base_url=sim.gemini_base_url))
    boto3.client("bedrock-runtime", region_name=R, endpoint_url=sim.bedrock_endpoint_url(R),
                 aws_access_key_id="sim", aws_secret_access_key="sim")

Bedrock regions all live in this one process. `bedrock_endpoint_url(R)` puts the region
in the path (`/bedrock/R`, kept by botocore), which is unambiguous; a client on the plain
`bedrock_base_endpoint_url` is attributed to the region of its SigV4 credential scope
(its `region_name`). `set_scenario(model, region=R, ...)` scripts one region only and
`set_region_down(R)` fails every Bedrock call in R ("region us-east-1 down");
`stats()["requests_by_region"]` / `["requests_by_region_model"]` show who was called.
"""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn, Self
from urllib.parse import quote

import httpx

_PROJECT_ROOT = Path(__file__).resolve().parent.parent
_LISTENING = re.compile(r"simulator listening on (http://\S+)")


class SimulatorProcess:
    """`python -m simulator --port 0` in a subprocess, plus a small control-API client."""

    api_key = "sim-key"
    """Any non-empty key except `sim-invalid-key` is accepted."""

    invalid_api_key = "sim-invalid-key"
    """The key the simulator rejects with 401 `invalid_api_key`."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        scenarios: str | Path | None = None,
        startup_timeout: float = 15.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._scenarios = scenarios
        self._startup_timeout = startup_timeout
        self._env = env
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self._http: httpx.Client | None = None
        self._base_url: str | None = None
        self.last_stderr = ""

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> Self:
        """Start the process and wait for its `listening` line (raises with its stderr)."""
        if self._proc is not None:
            raise RuntimeError("simulator already started")
        cmd = [sys.executable, "-m", "simulator", "--host", self._host, "--port", str(self._port)]
        if self._scenarios is not None:
            cmd += ["--scenarios", str(self._scenarios)]
        env = {**os.environ, **(self._env or {})}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        # Lives as long as the process (closed in stop()); a file, not a pipe, so a
        # chatty stderr can never block the simulator.
        self._stderr = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115
        self._proc = subprocess.Popen(
            cmd,
            cwd=_PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=_pump, args=(self._proc.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + self._startup_timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.0)) if remaining > 0 else None
            except queue.Empty:
                line = None
            if line is None:
                self._fail_start(
                    "exited"
                    if self._proc.poll() is not None
                    else f"did not report listening within {self._startup_timeout:g}s"
                )
            match = _LISTENING.search(line)
            if match:
                self._base_url = match.group(1)
                break
        self._http = httpx.Client(base_url=self._base_url, timeout=10.0)
        return self

    def _fail_start(self, why: str) -> NoReturn:
        assert self._proc is not None
        code = self._proc.poll()
        self.stop()
        stderr = self.last_stderr
        raise RuntimeError(f"simulator {why} (exit code {code}); stderr:\n{stderr or '<empty>'}")

    def _read_stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read()

    def stop(self) -> None:
        """Terminate (SIGTERM), wait, kill if it does not exit; safe to call twice."""
        if self._http is not None:
            self._http.close()
            self._http = None
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self.last_stderr = self._read_stderr()  # kept for error reports after stop
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT` (control API lives under `/_sim/`)."""
        if self._base_url is None:
            raise RuntimeError("simulator not started")
        return self._base_url

    @property
    def openai_base_url(self) -> str:
        """`base_url` for the OpenAI SDK: `http://HOST:PORT/v1`."""
        return self.base_url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """`base_url` for the Anthropic SDK (it appends `/v1/messages` itself)."""
        return self.base_url

    @property
    def gemini_base_url(self) -> str:
        """`HttpOptions.base_url` for google-genai (it appends `/v1beta/models/...`)."""
        return self.base_url

    def bedrock_endpoint_url(self, region: str) -> str:
        """boto3 `endpoint_url` for Bedrock Runtime in `region`: `http://HOST:PORT/bedrock/R`."""
        return f"{self.base_url}/bedrock/{quote(region, safe='')}"

    @property
    def bedrock_base_endpoint_url(self) -> str:
        """boto3 `endpoint_url` whose region is read from the SigV4 credential scope."""
        return self.base_url

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    # -- control API ----------------------------------------------------------------

    def set_scenario(
        self, model: str, *, region: str | None = None, **behaviour: Any
    ) -> dict[str, Any]:
        """Replace `model`'s behaviour (fields as in the control API), in every region or
        only in `region`; returns the behaviour normalised."""
        path = _scenario_path(model, region)
        return self._call("PUT", path, json=behaviour)["behaviour"]

    def remove_scenario(self, model: str, *, region: str | None = None) -> None:
        self._call("DELETE", _scenario_path(model, region))

    def clear_scenarios(self) -> None:
        """Every scenario and every region outage."""
        self._call("DELETE", "/_sim/scenarios")

    def set_region_down(self, region: str, status: int = 503, message: str | None = None) -> None:
        """Fail every call in `region` with `status` until `set_region_up` or a reset."""
        body: dict[str, Any] = {"down": True, "status": status}
        if message is not None:
            body["message"] = message
        self._call("PUT", "/_sim/regions/" + quote(region, safe=""), json=body)

    def set_region_up(self, region: str) -> None:
        self._call("DELETE", "/_sim/regions/" + quote(region, safe=""))

    def regions_down(self) -> dict[str, Any]:
        """Regions currently down: `{region: {status, message}}`."""
        return self._call("GET", "/_sim/regions")

    def scenarios(self) -> dict[str, Any]:
        """Current behaviours, each with `failures_remaining`."""
        return self._call("GET", "/_sim/scenarios")

    def reset(self) -> None:
        """Clear all scenarios and region outages and zero the counters."""
        self._call("POST", "/_sim/reset")

    def reset_stats(self) -> None:
        """Zero the counters, keep the scenarios."""
        self._call("DELETE", "/_sim/stats")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_sim/stats")

    def wait_for_stats(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        timeout: float = 2.0,
        interval: float = 0.01,
    ) -> dict[str, Any]:
        """Poll stats until `predicate` holds; raises TimeoutError with the last snapshot."""
        deadline = time.monotonic() + timeout
        while True:
            stats = self.stats()
            if predicate(stats):
                return stats
            if time.monotonic() >= deadline:
                raise TimeoutError(f"stats condition not met within {timeout:g}s: {stats}")
            time.sleep(interval)

    def health(self) -> bool:
        try:
            return self._call("GET", "/_sim/health").get("status") == "ok"
        except (httpx.HTTPError, RuntimeError):
            return False

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        if self._http is None:
            raise RuntimeError("simulator not started")
        response = self._http.request(method, path, json=json)
        if response.status_code >= 400:
            raise RuntimeError(f"{method} {path} -> {response.status_code}: {response.text}")
        return response.json()


def _scenario_path(model: str, region: str | None = None) -> str:
    path = "/_sim/scenarios/" + quote(model, safe="/:@")
    return path if region is None else f"{path}?region={quote(region, safe='')}"


def _pump(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    """Forward stdout lines (and EOF as None) so startup can wait with a timeout."""
    if stream is None:
        lines.put(None)
        return
    try:
        for line in stream:
            lines.put(line)
    except (OSError, ValueError):
        pass
    lines.put(None)
