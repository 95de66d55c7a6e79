"""The bodies of the OpenAI-compatible routes (`/v1/chat/completions`, `/v1/models`,
`/v1/embeddings`), in OpenAI's spelling.

Requests ignore fields they do not know (`extra="ignore"`): OpenAI clients send many parameters
(`top_p`, `seed`, `presence_penalty`, …) that Parley has no use for, and refusing them would
refuse the clients. What Parley adds is named in docs/api.md ("OpenAI-compatible API").
"""

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from parley.gateway.schemas import NO_NUL, Id
from parley.gateway.schemas.chat import Source, Tier
from parley.kit.contracts import MAX_COLLECTIONS_PER_CONVERSATION, MAX_EMBED_TEXTS, MAX_MESSAGE_CHARS

# A client's whole history may come with every request (Open WebUI sends it); each message is
# bounded by the body limit, the number here.
MAX_MESSAGES = 1_000
MAX_STOPS = 4  # OpenAI's own limit
MAX_DIMENSIONS = 65_536  # no embedder makes more (pgvector's own limit is 16,000)


# A message's or embedded text: no NUL (PostgreSQL text cannot hold it; chat-svc and retrieval
# refuse it), refused here with the field's name.
Text = Annotated[str, StringConstraints(pattern=NO_NUL)]
EmbedText = Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=NO_NUL)]


class OpenAiBody(BaseModel):
    model_config = ConfigDict(extra="ignore")


class TextPart(OpenAiBody):
    # Only text is read: a part of another type (an image, audio) is refused by the route, with
    # words saying so (`only text content is supported`) rather than a union's validation error.
    type: Annotated[str, Field(json_schema_extra={"enum": ["text"]})]
    text: Text = ""


class ChatMessageIn(OpenAiBody):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: Text | list[TextPart] | None = None

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


# `parley/<collection>[+<collection>…][@…]` naming more collections than a question may ask (a 400):
# the document says so with `not` this pattern.
TOO_MANY_COLLECTIONS = rf"^parley/\+*(?:[^+@]+\++){{{MAX_COLLECTIONS_PER_CONVERSATION}}}[^+@]"
# The metadata keys Parley reads: a conversation's id (empty: none), collection ids separated by
# commas (blank parts skipped).
METADATA_IDS = {"conversation_id": r"^[A-Za-z0-9-]*$", "collection_ids": r"^[A-Za-z0-9,\s-]*$"}
Stop = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class ChatCompletionIn(OpenAiBody):
    """What the route refuses that JSON Schema cannot say is in the route's description (the last
    message must be a user's, with a question that is not blank and fits `MAX_MESSAGE_CHARS`)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"model": "parley/Manuals", "messages": [{"role": "user", "content": "How often should I descale?"}]},
                {
                    "model": "parley",
                    "messages": [{"role": "user", "content": [{"type": "text", "text": "And the grinder?"}]}],
                    "conversation_id": "0b6f3c1e-5d2a-4c8e-9f41-7a2d9e3b1c55",
                    "stream": True,
                    "stream_options": {"include_usage": True},
                },
            ],
            # Something to ask (400 otherwise): collections the model names, `collection_ids` (or
            # metadata's), or a conversation to continue (`conversation_id`, or metadata's).
            "anyOf": [
                {"properties": {"model": {"pattern": r"^parley/\+*[^+@]"}}},
                {"required": ["collection_ids"], "properties": {"collection_ids": {"type": "array", "minItems": 1}}},
                {"required": ["conversation_id"], "properties": {"conversation_id": {"type": "string"}}},
                {
                    "required": ["metadata"],
                    "properties": {
                        "metadata": {
                            "type": "object",
                            "required": ["conversation_id"],
                            "properties": {"conversation_id": {"minLength": 1}},
                        }
                    },
                },
                {
                    "required": ["metadata"],
                    "properties": {
                        "metadata": {
                            "type": "object",
                            "required": ["collection_ids"],
                            "properties": {"collection_ids": {"pattern": "[A-Za-z0-9-]"}},
                        }
                    },
                },
            ],
        }
    )

    model: Annotated[
        str,
        StringConstraints(min_length=1, max_length=1_000),
        Field(
            json_schema_extra={"not": {"pattern": TOO_MANY_COLLECTIONS}},
            description="`parley/<collection>[+<collection>…][@<provider>[/<model>]]` (see GET /v1/models); "
            "a collection, provider or model this deployment does not have is a 404 or 400",
        ),
    ]
    messages: Annotated[list[ChatMessageIn], Field(min_length=1, max_length=MAX_MESSAGES)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    max_completion_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    stop: Stop | Annotated[list[Stop], Field(max_length=MAX_STOPS)] | None = None
    user: Annotated[str, StringConstraints(max_length=256)] | None = None
    n: Annotated[int, Field(ge=1, le=1)] = 1
    # OpenAI's `metadata` (string values): Parley reads `conversation_id` and `collection_ids`
    # (comma-separated) from it, for clients that can send metadata but no extra fields.
    metadata: Annotated[
        dict[str, Annotated[str, StringConstraints(max_length=512)]] | None,
        Field(
            json_schema_extra={
                "properties": {key: {"type": "string", "pattern": pattern} for key, pattern in METADATA_IDS.items()}
            }
        ),
    ] = None
    # Parley's own, sent as extra body fields (`extra_body=` in the openai SDK).
    conversation_id: Id | None = None
    collection_ids: Annotated[list[Id], Field(max_length=MAX_COLLECTIONS_PER_CONVERSATION)] | None = None
    tier: Tier = "standard"

    @field_validator("metadata")
    @classmethod
    def _metadata_ids(cls, metadata: dict[str, str] | None) -> dict[str, str] | None:
        for key, pattern in METADATA_IDS.items():
            if metadata is not None and not re.fullmatch(pattern, metadata.get(key, "")):
                raise ValueError(f"{key} must be ids (A-Z, a-z, 0-9, -)")
        return metadata

    def stops(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else self.stop

    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


class EmbeddingsIn(OpenAiBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"model": "parley/Manuals", "input": "descale with citric acid"},
                {"model": "parley/Manuals", "input": ["a burr grinder", "the boiler"], "encoding_format": "base64"},
            ]
        }
    )

    model: Annotated[str, StringConstraints(min_length=1, max_length=1_000)]
    input: EmbedText | Annotated[list[EmbedText], Field(min_length=1, max_length=MAX_EMBED_TEXTS)]
    encoding_format: Literal["float", "base64"] = "float"
    # A size other than the embedder's is a 400 (which the document cannot know: it is the deployment's).
    dimensions: Annotated[int, Field(ge=1, le=MAX_DIMENSIONS)] | None = None
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
