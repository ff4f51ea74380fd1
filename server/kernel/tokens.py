"""The one token-estimation policy of the gateway.

The vendor's tokenizer is not known before a call (a chain may cross vendors), so every
place that needs a token count before the vendor reports one uses these two functions:

- ``estimate_tokens(text)``: the expected count, ceil(characters / 4) — what English text
  averages on current tokenizers. For budgets that cap growth (grounding context), rate
  limits taken before the call, and the charge of a stream whose caller went away (the
  vendor's usage never arrives).
- ``upper_bound_tokens(text_bytes)``: a bound the vendor's count should not exceed,
  bytes / 2 + 16 — dense scripts and code average 2-3 bytes per token. For holds, which
  must cover the worst case so a call never costs more than was reserved.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4
BYTES_PER_TOKEN_WORST = 2
OVERHEAD_TOKENS = 16  # role markers and message framing
# The most prompt tokens one image is billed as by the vendors we serve (Anthropic: ~1,600
# for a 1.15-megapixel image; OpenAI high detail: 1,105 for a 2048×768 tiling).
IMAGE_PROMPT_TOKENS = 1_600


def estimate_tokens(text: str) -> int:
    """Expected tokens of ``text``."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_tokens_of_chars(chars: int) -> int:
    """Expected tokens of a text of ``chars`` characters (when only the length is kept)."""
    return -(-chars // CHARS_PER_TOKEN)


def upper_bound_tokens(text_bytes: int) -> int:
    """At most this many tokens for a prompt of ``text_bytes`` UTF-8 bytes."""
    return text_bytes // BYTES_PER_TOKEN_WORST + OVERHEAD_TOKENS
