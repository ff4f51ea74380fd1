"""Retry hints in vendor response headers, read the same way for every HTTP vendor.

Vendors say "come back later" differently: ``retry-after-ms`` (OpenAI), ``retry-after``
in seconds (most) or as an HTTP date (RFC 9110). The router only wants seconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime


def retry_after_s(headers: Mapping[str, str] | None, *,
                  now: float | None = None) -> float | None:
    """Seconds to wait before retrying, or None when the headers do not say."""
    if not headers:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
