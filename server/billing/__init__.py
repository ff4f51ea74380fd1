"""Wallets, a double-entry ledger, pricing, holds, charges and budgets.

Vocabulary follows TigerBeetle: accounts (wallets and per-currency system accounts),
transfers (our "transactions", each a set of entries summing to zero), pending transfers
(holds) that are posted (settled) or voided, idempotent ids and balance constraints.
This package knows no vendor and no gRPC: handlers translate to and from it.
"""
