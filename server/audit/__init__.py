"""The audit trail: who changed what, when, and what it was before and after.

Every change of configuration, routes, wallets and budgets is recorded as one append-only
``audit_events`` row (migration 0009). Recording is the app shell's job (the gRPC audit
interceptor, the ``llmgw routes`` command); this package only knows events, how big and
how secret their JSON may be (``events``), how to read an object's state before a change
(``snapshots``), how to store and page through events (``store``, ``query``) and how a
failed write is reported instead of lost (``recorder``). It imports no grpc.
"""
