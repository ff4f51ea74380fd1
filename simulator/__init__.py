"""Local stand-ins for LLM vendor APIs, for tests, benchmarks and the demo.

Production code never imports this package; it is started as a separate process
(`python -m simulator`, or `simulator.testing.SimulatorProcess`) and reached over HTTP
by the official vendor SDKs pointed at its base URL.

Layout, vendor-neutral first (none of these knows HTTP or any vendor's shapes):
`scenario` the scripted `Behaviour` model (field reference in its docstring) with
`validation`; `scenario_book` which behaviour applies to a call and what error it
answers; `scenario_file` scenarios frozen into YAML/JSON; `faults` how a reply that got
its HTTP 200 ends (complete, dropped, failed in-stream, silently truncated);
`replies` the deterministic text and token counts; `vectors` embeddings; `pacing`
latency and token rate; `stats` counters and per-call bookkeeping; `state` the one
mutable object. One module per vendor protocol translates all that to that vendor's
wire format (`openai_api`, `anthropic_api`, `gemini_api`, `bedrock_api` with
`eventstream` framing), sharing the transport helpers in `wire`; `app` assembles them
with the `/_sim/` control API, which `ctl` drives from the shell and
`testing.SimulatorProcess` from Python.
"""
