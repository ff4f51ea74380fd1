"""The direct OpenAI transport runs without the ``openai`` SDK in the process: it posts to
the endpoint the SDK would resolve, and its failures are classified without importing the
SDK (which, with httpx and httpx2, holds ~18 MB of resident memory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from openai import AsyncOpenAI

from server.providers.openai import resolved_base_url

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("configured, environment", [
    ("http://127.0.0.1:8900/v1", None),
    ("http://127.0.0.1:8900/v1/", "http://elsewhere/v1"),
    ("https://ark.ap-southeast.bytepluses.com/api/v3", None),
    (None, "http://127.0.0.1:9999/openai/v1"),
    (None, None),
])
def test_the_direct_transport_posts_where_the_sdk_would(
        monkeypatch: pytest.MonkeyPatch, configured: str | None, environment: str | None) -> None:
    if environment is None:
        monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("OPENAI_BASE_URL", environment)
    sdk = str(AsyncOpenAI(api_key="k", base_url=configured).base_url)
    assert resolved_base_url(configured).rstrip("/") == sdk.rstrip("/")


# A call to a port nobody listens on, a vendor error status and a stream error, each
# classified, in a process that never imported the SDK.
PROBE = """
import asyncio, socket, sys
from server.providers.base import ChatMessage, ProviderError, ProviderRequest
from server.providers.openai import OpenAIProvider, classify
from server.providers.openai_direct import StreamFailed, VendorStatus

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
provider = OpenAIProvider("p", base_url=f"http://127.0.0.1:{port}/v1", api_key="k",
                          timeout_s=5, max_connections=4, transport="direct")

async def main():
    request = ProviderRequest(model="m", messages=[ChatMessage("user", "hi")])
    try:
        await provider.generate(request, 5)
    except ProviderError as error:
        print(error.kind.name)
    finally:
        await provider.aclose()

asyncio.run(main())
print(classify(VendorStatus(429, {}, {})).kind.name, classify(StreamFailed()).kind.name,
      classify(TimeoutError()).kind.name)
print(" ".join(m for m in ("openai", "httpx", "httpx2") if m in sys.modules) or "none")
"""


def test_direct_calls_and_their_errors_need_no_sdk() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=True)
    assert done.stdout.split("\n")[:3] == ["UNAVAILABLE", "RATE_LIMITED UNAVAILABLE TIMEOUT",
                                           "none"]
