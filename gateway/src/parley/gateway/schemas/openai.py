"""The bodies of the OpenAI-compatible routes (`/v1/chat/completions`, `/v1/models`,
`/v1/embeddings`), in OpenAI's spelling.

Requests ignore fields they do not know (`extra="ignore"`): OpenAI clients send many parameters
(`top_p`, `seed`, `presence_penalty`, …) that Parley has no use for, and refusing them would
refuse the clients. What Parley adds is named in docs/api.md ("OpenAI-compatible API").
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from parley.gateway.schemas import Id
from parley.gateway.schemas.chat import Source, Tier
from parley.kit.contracts import MAX_COLLECTIONS_PER_CONVERSATION, MAX_EMBED_TEXTS, MAX_MESSAGE_CHARS

# A client's whole history may come with every request (Open WebUI sends it); each message is
# bounded by the body limit, the number here.
MAX_MESSAGES = 1_000
MAX_STOPS = 4  # OpenAI's own limit


class OpenAiBody(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(OpenAiBody):
    type: str
    text: str = ""


class ChatMessageIn(OpenAiBody):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        """The message's text; parts that are not text (images, audio) are refused by the caller."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if part.type == "text")

    def has_non_text(self) -> bool:
        return isinstance(self.content, list) and any(part.type != "text" for part in self.content)


class StreamOptions(OpenAiBody):
    include_usage: bool = False


class ChatCompletionIn(OpenAiBody):
    model: Annotated[str, StringConstraints(min_length=1, max_length=1_000)]
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=MAX_MESSAGES)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    stop: (
        Annotated[str, StringConstraints(min_length=1, max_length=200)]
        | list[Annotated[str, StringConstraints(min_length=1, max_length=200)]]
        | None
    ) = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    # OpenAI's `metadata` (string values): Parley reads `conversation_id` and `collection_ids`
    # (comma-separated) from it, for clients that can send metadata but no extra fields.
    metadata: dict[str, Annotated[str, StringConstraints(max_length=512)]] | None = None
    # Parley's own, sent as extra body fields (`extra_body=` in the openai SDK).
    conversation_id: Id | None = None
    collection_ids: Annotated[list[Id], Field(max_length=MAX_COLLECTIONS_PER_CONVERSATION)] | None = None
    tier: Tier = "standard"

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        stops = [self.stop] if isinstance(self.stop, str) else self.stop
        if len(stops) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop sequences")
        return stops

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class EmbeddingsIn(OpenAiBody):
    model: Annotated[str, StringConstraints(min_length=1, max_length=1_000)]
    input: (
        Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS)]
        | Annotated[
            list[Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS)]],
            Field(min_length=1, max_length=MAX_EMBED_TEXTS),
        ]
    )
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None


class CompletionUsage(BaseModel):
    """Parley's metered usage in OpenAI's words. `prompt_tokens` counts every input token, cache
    reads and writes included (as OpenAI counts them); the cached share is in the details."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: dict[str, int]
    # Parley's additions: what the turn cost at usage-svc's prices (null: not known) and the
    # tokens written to a provider's prompt cache (billed dearer than plain input).
    cost_usd: float | None = None
    cache_write_tokens: int = 0


Citation = Source  # the same fields as a streamed turn's `sources`


class ModelOut(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "parley"
    # Which collection the name asks; what a UI may show beside it.
    parley: dict[str, Any]


class ModelsOut(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]
