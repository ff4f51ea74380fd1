"""Assembly of the simulator's aiohttp app: vendor protocols + the `/_sim/` control API.

The control API is how tests script behaviour and read counters while the simulator
runs as a separate process; it is plain JSON so any language (or curl) can drive it.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from simulator.anthropic_api import AnthropicProtocol
from simulator.bedrock_api import BedrockProtocol
from simulator.gemini_api import GeminiProtocol
from simulator.openai_api import OpenAIProtocol
from simulator.scenario import Behaviour, RegionOutage, ScenarioError
from simulator.state import SimulatorState

_STATE_KEY = web.AppKey("simulator_state", SimulatorState)
_MAX_BODY = 64 * 1024 * 1024  # RAG prompts can be large; the vendor limit is the model's
_SHUTDOWN_TIMEOUT_S = 1.0  # hanging (`timeout: true`) calls must not delay shutdown


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=json.dumps(data), content_type="application/json")


class ControlAPI:
    """`/_sim/` routes: script behaviours, region outages, read and reset counters, health.

    Scenario routes take an optional `?region=R`: the behaviour then applies only to
    calls in that region (Bedrock), ahead of the model's region-less behaviour.
    """

    def __init__(self, state: SimulatorState) -> None:
        self._state = state

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sim/health", self.health),
            web.get("/_sim/stats", self.stats),
            web.delete("/_sim/stats", self.reset_stats),
            web.get("/_sim/scenarios", self.list_scenarios),
            web.put("/_sim/scenarios/{model:.+}", self.put_scenario),
            web.delete("/_sim/scenarios/{model:.+}", self.delete_scenario),
            web.delete("/_sim/scenarios", self.clear_scenarios),
            web.post("/_sim/reset", self.reset),
            web.get("/_sim/regions", self.list_regions),
            web.put("/_sim/regions/{region}", self.put_region),
            web.delete("/_sim/regions/{region}", self.delete_region),
        ]

    async def health(self, request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def stats(self, request: web.Request) -> web.Response:
        return _json(self._state.stats.snapshot())

    async def reset_stats(self, request: web.Request) -> web.Response:
        self._state.stats.reset()
        return _json(self._state.stats.snapshot())

    async def list_scenarios(self, request: web.Request) -> web.Response:
        return _json(self._state.scenarios.snapshot())

    async def put_scenario(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        try:
            raw = await request.read()
            behaviour = Behaviour.from_mapping(json.loads(raw) if raw.strip() else {})
        except (ValueError, ScenarioError) as exc:
            return _json({"error": str(exc)}, status=400)
        region = request.query.get("region") or None
        self._state.scenarios.set(model, behaviour, region)
        return _json({"model": model, "region": region, "behaviour": behaviour.to_dict()})

    async def delete_scenario(self, request: web.Request) -> web.Response:
        model = request.match_info["model"]
        region = request.query.get("region") or None
        if not self._state.scenarios.remove(model, region):
            where = f" in region {region}" if region else ""
            return _json({"error": f"no scenario for {model!r}{where}"}, status=404)
        return _json({"deleted": model, "region": region})

    async def list_regions(self, request: web.Request) -> web.Response:
        """Regions currently down, with the status their calls fail with."""
        return _json(self._state.scenarios.outages_snapshot())

    async def put_region(self, request: web.Request) -> web.Response:
        """`{"down": true, "status": 503, "message": ...}` takes a region down; `down: false`
        brings it back (same as DELETE)."""
        region = request.match_info["region"]
        try:
            raw = await request.read()
            data = json.loads(raw) if raw.strip() else {}
            outage = RegionOutage.from_mapping(data)
        except (ValueError, ScenarioError) as exc:
            return _json({"error": str(exc)}, status=400)
        down = data.get("down", True)
        if not isinstance(down, bool):
            return _json({"error": "down must be true or false"}, status=400)
        if not down:
            self._state.scenarios.set_region_up(region)
            return _json({"region": region, "down": False})
        self._state.scenarios.set_region_down(region, outage)
        return _json({"region": region, "down": True, "status": outage.status})

    async def delete_region(self, request: web.Request) -> web.Response:
        region = request.match_info["region"]
        was_down = self._state.scenarios.set_region_up(region)
        return _json({"region": region, "down": False, "was_down": was_down})

    async def clear_scenarios(self, request: web.Request) -> web.Response:
        """Every scenario and every region outage."""
        self._state.scenarios.clear()
        return _json({"cleared": True})

    async def reset(self, request: web.Request) -> web.Response:
        self._state.scenarios.clear()
        self._state.stats.reset()
        return _json({"reset": True})


def create_app(state: SimulatorState | None = None) -> web.Application:
    """Build the app; every protocol shares one state so scenarios and stats are global.

    A new vendor protocol is one more `XProtocol(state).routes()` line here.
    """
    state = state or SimulatorState()
    app = web.Application(client_max_size=_MAX_BODY)
    app[_STATE_KEY] = state
    app.add_routes(ControlAPI(state).routes())
    app.add_routes(OpenAIProtocol(state).routes())
    app.add_routes(AnthropicProtocol(state).routes())
    app.add_routes(GeminiProtocol(state).routes())
    app.add_routes(BedrockProtocol(state).routes())
    return app


def app_state(app: web.Application) -> SimulatorState:
    """The state of an app made by `create_app` (for in-process use)."""
    return app[_STATE_KEY]


# Pending connections the kernel queues for accept() (capped by net.core.somaxconn).
_BACKLOG = 4096


async def start_server(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve `app`; returns the runner (call `cleanup()` to stop) and the bound port.

    `handler_cancellation=True` is what makes a vanished client visible at once: aiohttp
    cancels the handler the moment the connection closes, even mid-sleep, and the call's
    `CallScope` counts it in `client_disconnects`. Access logging is off for speed.
    The listen backlog is `_BACKLOG`, not aiohttp's 128: a gateway opening hundreds of
    connections at once (a burst of streams) would otherwise overflow the accept queue and
    wait for SYN retransmits (1 s, 3 s ...) that a real vendor's front end does not cause.
    """
    runner = web.AppRunner(
        app,
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=_BACKLOG)
    await site.start()
    bound = runner.addresses[0][1] if runner.addresses else port
    return runner, int(bound)
