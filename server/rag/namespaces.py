"""The namespace rule: what a retrieval namespace name may look like.

A namespace is the isolation unit of retrieval (each has its own partial HNSW index), and
its name reaches SQL, index names and logs, so the rule lives here, in the domain, where
the RPC handlers, grounded Generate and ``llmgw ingest`` all read it.
"""

from __future__ import annotations

import re

from server.kernel.tenancy import local_name

NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}$")
NAMESPACE_RULE = ("1-128 characters: letters, digits and _ . : @ / - "
                  "(starting with a letter or digit)")


def namespace_problem(namespace: str) -> str | None:
    """Why ``namespace`` is not acceptable, or None when it is (the rule is on a tenant's
    own name; a stored name carries its tenant, server/kernel/tenancy.py)."""
    if not namespace:
        return "is required"
    if not NAMESPACE_RE.match(local_name(namespace)):
        return NAMESPACE_RULE
    return None
