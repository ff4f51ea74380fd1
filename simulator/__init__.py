"""Local stand-ins for LLM vendor APIs, for tests, benchmarks and the demo.

Production code never imports this package; it is started as a separate process
(`python -m simulator`, or `simulator.testing.SimulatorProcess`) and reached over HTTP
by the official vendor SDKs pointed at its base URL.

Layout: `scenario` holds vendor-neutral behaviour (scripted latency, token rate,
failures, drops, counters); one module per vendor protocol translates it to that
vendor's wire format (`openai_api` today); `app` assembles them with the `/_sim/`
control API.
"""
