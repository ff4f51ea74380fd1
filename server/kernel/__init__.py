"""The shared kernel: what every layer may import and which imports none of them.

Domain errors (``errors``), configuration types (``config``), metrics, the database
engine and migrations (``db``), the per-call context, telemetry and the one
token-estimation policy (``tokens``). Nothing here knows grpc handlers, the use cases or
the vendors; the app shell (``server/app.py``, ``serve.py``, ``cli/``, ``handlers/``,
``interceptors/``, ``status.py``) sits above it.
"""
