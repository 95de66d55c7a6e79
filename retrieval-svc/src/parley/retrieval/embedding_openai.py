"""OpenAI's embeddings API (or a server that speaks it, by base URL), through OpenAI's official SDK.

Texts go out in batches of at most 2,048 inputs and `max_request_tokens` tokens (the API refuses
more than 2,048 inputs or 300,000 tokens in one request), each input cut to the model's 8,191
tokens. Tokens are counted with cl100k_base, the text-embedding-3 models' own tokenizer. A text
with no words is not sent (the API refuses empty input): its vector is all zeros, as the other
embedders give it. The SDK retries 408, 409, 429, 5xx and lost connections `max_retries` times
with its jittered exponential backoff, never sooner than `retry-after`; what still fails is
`Unavailable` (a search that needs it is UNAVAILABLE, an indexing is redelivered). The bill is the
API's own `usage.prompt_tokens`.
"""

import asyncio
from collections.abc import Sequence

import openai

from parley.kit.errors import Unavailable
from parley.kit.tokens import encoding, load_encoding
from parley.retrieval.embeddings import Embedded

MAX_INPUTS_PER_REQUEST = 2048
MAX_TOKENS_PER_INPUT = 8191
# Below the API's 300,000 so our count and the server's may differ a little.
DEFAULT_MAX_REQUEST_TOKENS = 250_000


class OpenAiEmbedder:
    provider = "openai"

    def __init__(
        self,
        *,
        api_key: str,
        model: str,
        dimensions: int,
        base_url: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 4,
        max_request_tokens: int = DEFAULT_MAX_REQUEST_TOKENS,
    ) -> None:
        self.model = model
        self.dimensions = dimensions
        # The width is part of the name: vectors of one model at two widths are not comparable.
        self.name = f"openai/{model}@{dimensions}"
        self._max_request_tokens = max_request_tokens
        self._client = openai.AsyncOpenAI(
            api_key=api_key, base_url=base_url, timeout=openai.Timeout(timeout, connect=5.0), max_retries=max_retries
        )

    async def warm_up(self) -> None:
        await load_encoding()

    async def close(self) -> None:
        await self._client.close()

    async def embed(self, texts: Sequence[str]) -> Embedded:
        vectors = [[0.0] * self.dimensions for _ in texts]
        # Counting tokens is CPU work: a large document's chunks are counted off the event loop.
        batches = await asyncio.to_thread(self._batches, texts) if len(texts) > 32 else self._batches(texts)
        tokens = 0
        for batch in batches:
            try:
                response = await self._client.embeddings.create(
                    model=self.model,
                    input=[text for _, text in batch],
                    dimensions=self.dimensions,
                    encoding_format="float",
                )
            except openai.APIError as error:
                # After the SDK's retries, or refused (key, quota, request): no vectors either way.
                status = error.status_code if isinstance(error, openai.APIStatusError) else type(error).__name__
                raise Unavailable(f"OpenAI embeddings failed ({status})") from error
            for item in response.data:
                vectors[batch[item.index][0]] = item.embedding
            tokens += response.usage.prompt_tokens
        return Embedded(vectors=vectors, input_tokens=tokens)

    def _batches(self, texts: Sequence[str]) -> list[list[tuple[int, str]]]:
        """(position, text) batches within the API's limits; blank texts left out."""
        batches: list[list[tuple[int, str]]] = []
        batch: list[tuple[int, str]] = []
        batch_tokens = 0
        for position, text in enumerate(texts):
            if not text.strip():
                continue
            tokens = encoding().encode(text, disallowed_special=())
            if len(tokens) > MAX_TOKENS_PER_INPUT:
                tokens = tokens[:MAX_TOKENS_PER_INPUT]
                text = encoding().decode(tokens)
            if batch and (
                len(batch) == MAX_INPUTS_PER_REQUEST or batch_tokens + len(tokens) > self._max_request_tokens
            ):
                batches.append(batch)
                batch, batch_tokens = [], 0
            batch.append((position, text))
            batch_tokens += len(tokens)
        if batch:
            batches.append(batch)
        return batches
