"""Chat: a question, the answer with its sources, usage and context, and the conversations
(routes/chat.py; the turn's events in chat_turns.py)."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from parley.gateway.schemas import NOT_BLANK, Body, FromProto, Id, NoneIfEmpty
from parley.kit.contracts import (
    INTENTS,
    MAX_COLLECTIONS_PER_CONVERSATION,
    MAX_INTENT_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_MODEL_CHARS,
    MAX_OUTPUT_TOKENS,
    MODEL_NAME,
)

Tier = Literal["quick", "standard", "deep"]


def _known_intent(intent: str) -> str:
    if intent and intent not in INTENTS:
        raise ValueError(f"unknown intent; known: {', '.join(INTENTS)}")
    return intent


class ChatIn(Body):
    """Checked here for a clear 422 early; chat-svc checks the same limits (kit.contracts) again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"message": "How often should I descale?", "collection_ids": ["3f1c…"], "stream": True}],
            # A new conversation names its collections; a turn in one names the conversation (chat-svc: 400).
            "anyOf": [
                {"required": ["collection_ids"], "properties": {"collection_ids": {"minItems": 1}}},
                {"required": ["conversation_id"], "properties": {"conversation_id": {"type": "string"}}},
            ],
        }
    )

    message: Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=NOT_BLANK)]
    # (A default that is a list goes in Field: ruff cannot see that a class based on Body is pydantic's.)
    collection_ids: list[Id] = Field(default=[], max_length=MAX_COLLECTIONS_PER_CONVERSATION)
    conversation_id: Id | None = None
    stream: bool = False
    tier: Tier = "standard"
    max_tokens: Annotated[int, Field(ge=1, le=MAX_OUTPUT_TOKENS)] | None = None
    # Empty: chat-svc decides (keywords, else a cheaper model when configured, else `question`).
    intent: Annotated[
        str,
        StringConstraints(max_length=MAX_INTENT_CHARS),
        AfterValidator(_known_intent),
        Field(json_schema_extra={"enum": ["", *INTENTS]}),
    ] = ""
    # The chunk the user has open: its text goes into the prompt, and edits and feedback read around it.
    current_section_id: Id | None = None
    # Empty: chat-svc's default. chat-svc checks them against the providers and models it serves.
    provider: Annotated[
        str,
        StringConstraints(max_length=MAX_MODEL_CHARS, pattern=MODEL_NAME),
        Field(description="empty: the default; one this deployment does not serve is a 400"),
    ] = ""
    model: Annotated[
        str,
        StringConstraints(max_length=MAX_MODEL_CHARS, pattern=MODEL_NAME),
        Field(description="empty: the provider's default; one it does not serve is a 400"),
    ] = ""


class Source(FromProto):
    index: int
    chunk_id: str
    document_id: str
    collection_id: str
    document_title: str
    heading: str
    snippet: str
    score: float


class Usage(FromProto):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, written to live an hour (billed 2x input)


class ContextPart(BaseModel):
    name: str
    tokens: int


class ToolCall(BaseModel):
    """A tool the model called during a turn, and what it returned (the `tool_call` and
    `tool_result` events; `context_used.tool_calls` on the stored answer)."""

    id: str
    name: str
    input_json: str
    round: int
    result: str
    is_error: bool


class ContextUsed(FromProto):
    """How an answer's prompt was built, and what the call read from and wrote to the prompt cache."""

    intent: str
    intent_source: str  # hint | keywords | model | default
    retrieval: str  # positional | hybrid | semantic
    tier: str
    budget_tokens: int
    parts: list[ContextPart]
    trimmed: list[str]
    notes: list[str]
    cache_read_tokens: int
    cache_write_tokens: int
    carried_passages: int  # passages found again that the conversation already sent: cited, not sent again
    tool_calls: list[ToolCall] = Field(default=[])  # the tools the model called, in order, with their results
    tool_rounds: int = 0  # model calls that asked for tools
    conversation_from: int = 0  # the conversation's messages before the first this prompt sent as it was
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, written to live an hour


class Message(FromProto):
    id: str
    role: str
    content: str
    sources: list[Source]
    usage: Usage | None = None  # an answer's; a question costs nothing by itself
    model: NoneIfEmpty = None
    turn_id: str
    created_at: datetime | None = None
    incomplete: bool = False  # the provider broke off: the answer is what arrived before it did
    context_used: ContextUsed | None = None  # an answer's
    cost_usd: float | None = None  # an answer's, as usage-svc priced it; null: not known


# `Conversation.of(proto, messages=None)` for a list, which carries none: null says "not loaded",
# [] would say "empty".
class Conversation(FromProto):
    id: str
    title: str
    collection_ids: list[str]
    messages: list[Message] | None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    next_page_token: NoneIfEmpty = Field(
        default=None,
        description="The conversation read alone: reads the messages before these; null when these are the first.",
    )


class ChatOut(BaseModel):
    conversation_id: str
    turn_id: str
    message: Message
    finish_reason: str
