"""Local stand-ins for LLM vendor APIs, for tests, benchmarks and the demo.

Production code never imports this package; it is started as a separate process
(`python -m simulator`, or `simulator.testing.SimulatorProcess`) and reached over HTTP
by the official vendor SDKs pointed at its base URL.

Layout: `scenario` holds vendor-neutral behaviour (scripted latency, token rate,
failures, drops, refusals, per-region scenarios and outages, counters); one module per
vendor protocol translates it to that vendor's wire format (`openai_api`,
`anthropic_api`, `gemini_api`, `bedrock_api` with `eventstream` framing), sharing the
transport helpers in `wire`; `app` assembles them with the `/_sim/` control API, which
`ctl` drives from the shell and `testing.SimulatorProcess` from Python.
"""
