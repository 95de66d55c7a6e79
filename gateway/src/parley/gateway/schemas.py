"""The public HTTP API's bodies: what clients send (validated) and what they get back.

Responses are built from the backends' protos here, once, so every route returns the same
shape for the same thing (ids as strings, times as ISO 8601, enums as lowercase words).
"""

import json
from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message as ProtoMessage
from google.protobuf.timestamp_pb2 import Timestamp
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from parley.kit.contracts import (
    INGEST_PRIORITIES,
    INTENTS,
    MAX_COLLECTIONS_PER_CONVERSATION,
    MAX_DESCRIPTION_CHARS,
    MAX_INTENT_CHARS,
    MAX_MESSAGE_CHARS,
    MAX_MODEL_CHARS,
    MAX_NAME_CHARS,
    MAX_OUTPUT_TOKENS,
    MAX_QUERY_CHARS,
    MAX_SEARCH_K,
    MODEL_NAME,
)
from parley.v1 import chat_pb2, common_pb2, ingestion_pb2, retrieval_pb2, usage_pb2

# PostgreSQL text cannot hold NUL; refused here, with the field's name, rather than failing later.
NO_NUL = r"^[^\x00]*$"
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_CHARS, pattern=NO_NUL)]
# An ingest job's queue: what an upload or a new version may ask for.
PRIORITY = f"^({'|'.join(INGEST_PRIORITIES)})$"
Id = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")]
Tier = Literal["quick", "standard", "deep"]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CollectionIn(Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Manuals", "description": "the kitchen's machines"}]}
    )

    name: Name
    description: Annotated[str, StringConstraints(max_length=MAX_DESCRIPTION_CHARS, pattern=NO_NUL)] = ""


def _known_intent(intent: str) -> str:
    if intent and intent not in INTENTS:
        raise ValueError(f"unknown intent; known: {', '.join(INTENTS)}")
    return intent


class ChatIn(Body):
    """Checked here for a clear 422 early; chat-svc checks the same limits (kit.contracts) again."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"message": "How often should I descale?", "collection_ids": ["3f1c…"], "stream": True}]
        }
    )

    message: Annotated[str, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS, pattern=NO_NUL)]
    collection_ids: Annotated[list[Id], Field(max_length=MAX_COLLECTIONS_PER_CONVERSATION)] = []
    conversation_id: Id | None = None
    stream: bool = False
    tier: Tier = "standard"
    max_tokens: Annotated[int, Field(ge=1, le=MAX_OUTPUT_TOKENS)] | None = None
    # Empty: chat-svc decides (keywords, else a cheaper model when configured, else `question`).
    intent: Annotated[str, StringConstraints(max_length=MAX_INTENT_CHARS), AfterValidator(_known_intent)] = ""
    # The chunk the user has open: its text goes into the prompt, and edits and feedback read around it.
    current_section_id: Id | None = None
    # Empty: chat-svc's default. chat-svc checks them against the providers and models it serves.
    provider: Annotated[str, StringConstraints(max_length=MAX_MODEL_CHARS, pattern=MODEL_NAME)] = ""
    model: Annotated[str, StringConstraints(max_length=MAX_MODEL_CHARS, pattern=MODEL_NAME)] = ""


class BudgetIn(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"monthly_limit_usd": 25.0}]})

    # Required, and null says "no limit" in so many words; 0 is a zero budget, not "no limit".
    # Strict: `false` or "5" is not an amount of money.
    monthly_limit_usd: Annotated[float, Field(ge=0, le=1_000_000, strict=True)] | None


def _time(stamp: Timestamp) -> datetime | None:
    return stamp.ToDatetime(tzinfo=datetime.now().astimezone().tzinfo) if stamp.seconds or stamp.nanos else None


# Read from a proto's attributes: an unset Timestamp is no time, an enum is its lowercase word,
# an empty error is none.
ProtoTime = Annotated[datetime | None, BeforeValidator(_time)]


def document_status(value: int) -> str:
    return ingestion_pb2.DocumentStatus.Name(value).removeprefix("DOCUMENT_STATUS_").lower()


DocumentStatusName = Annotated[str, BeforeValidator(document_status)]
NoneIfEmpty = Annotated[str | None, BeforeValidator(lambda value: value or None)]


class FromProto(BaseModel):
    """A response built from a backend's proto by its same-named fields."""

    model_config = ConfigDict(from_attributes=True)


class Collection(FromProto):
    id: str
    name: str
    description: str
    document_count: int
    created_at: ProtoTime

    @classmethod
    def of(cls, proto: ingestion_pb2.Collection) -> "Collection":
        return cls.model_validate(proto)


class Document(FromProto):
    id: str
    collection_id: str
    title: str
    content_type: str
    status: DocumentStatusName
    version: int
    size_bytes: int
    chunk_count: int
    token_count: int
    content_sha256: str
    error: NoneIfEmpty
    failed_stage: NoneIfEmpty
    done: int
    total: int
    message: str
    # A screenplay's growth (empty, partial, analyzed: which artifacts it gets); null for other documents.
    analysis_state: NoneIfEmpty
    created_at: ProtoTime
    updated_at: ProtoTime

    @classmethod
    def of(cls, proto: ingestion_pb2.Document) -> "Document":
        return cls.model_validate(proto)


class DocumentProgress(FromProto):
    """One `progress` event of a document's SSE stream."""

    status: DocumentStatusName
    version: int
    chunk_count: int
    error: str
    failed_stage: str
    done: int
    total: int
    message: str

    @classmethod
    def of(cls, proto: ingestion_pb2.DocumentProgress) -> "DocumentProgress":
        return cls.model_validate(proto)


class DeadLetter(FromProto):
    """A message a service's consumer kept failing on and set aside; `seq` names it for a replay."""

    seq: int
    consumer: str
    document_id: str
    version: int
    subject: str
    deliveries: int
    reason: str
    parked_at: ProtoTime

    @classmethod
    def of(cls, proto: ingestion_pb2.DeadLetter) -> "DeadLetter":
        return cls.model_validate(proto)


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_page_token: str | None


def proto_fields(proto: ProtoMessage) -> dict[str, Any]:
    """A proto as a dict of its fields, under their proto names (int64s as ints, times as ISO
    8601, unset messages left out): what the models below validate, so none copies fields by hand."""
    return MessageToDict(
        proto,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


class Source(BaseModel):
    index: int
    chunk_id: str
    document_id: str
    collection_id: str
    document_title: str
    heading: str
    snippet: str
    score: float

    @classmethod
    def of(cls, proto: chat_pb2.Source) -> "Source":
        return cls.model_validate(proto_fields(proto))


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, written to live an hour (billed 2x input)

    @classmethod
    def of(cls, proto: common_pb2.TokenUsage) -> "Usage":
        return cls.model_validate(proto_fields(proto))


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


class ContextUsed(BaseModel):
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
    tool_calls: list[ToolCall] = []  # the tools the model called, in order, with their results
    tool_rounds: int = 0  # model calls that asked for tools
    conversation_from: int = 0  # the conversation's messages before the first this prompt sent
    cache_write_1h_tokens: int = 0  # of cache_write_tokens, written to live an hour

    @classmethod
    def of(cls, proto: chat_pb2.ContextUsed) -> "ContextUsed":
        return cls.model_validate(proto_fields(proto))


class Message(BaseModel):
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

    @model_validator(mode="before")
    @classmethod
    def _cost_in_usd(cls, fields: Any) -> Any:
        # chat-svc's Message (a proto's fields, here or within a Conversation) says micro-USD.
        if isinstance(fields, dict) and "cost_micros" in fields:
            fields = dict(fields)
            fields["cost_usd"] = usd(int(fields.pop("cost_micros")))
        return fields

    @classmethod
    def of(cls, proto: chat_pb2.Message) -> "Message":
        return cls.model_validate(proto_fields(proto))


class Conversation(BaseModel):
    id: str
    title: str
    collection_ids: list[str]
    messages: list[Message] | None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    next_page_token: str | None = Field(
        default=None,
        description="The conversation read alone: reads the messages before these; null when these are the first.",
    )

    @classmethod
    def of(cls, proto: chat_pb2.Conversation, *, with_messages: bool) -> "Conversation":
        fields = proto_fields(proto)
        if not with_messages:  # a list carries none: null says "not loaded", [] would say "empty"
            fields["messages"] = None
        fields["next_page_token"] = proto.next_page_token or None
        return cls.model_validate(fields)


class ChatOut(BaseModel):
    conversation_id: str
    turn_id: str
    message: Message
    finish_reason: str


MICROS_PER_USD = 1_000_000


def usd(micros: int) -> float:
    return micros / MICROS_PER_USD


def micros(usd: float) -> int:
    return round(usd * MICROS_PER_USD)


def optional_usd(message: ProtoMessage, field: str) -> float | None:
    """An optional micro-USD field in USD; None (no limit, not known) when it is unset."""
    return usd(getattr(message, field)) if message.HasField(field) else None


class UsageRow(BaseModel):
    group: str
    events: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int  # of cache_write_tokens, written to live an hour
    total_tokens: int
    cost_usd: float

    @classmethod
    def of(cls, proto: usage_pb2.UsageRow) -> "UsageRow":
        counts = {name: getattr(proto, name) for name in cls.model_fields if name != "cost_usd"}
        return cls(**counts, cost_usd=usd(proto.cost_micros))


class UsageOut(BaseModel):
    since: datetime
    until: datetime
    group_by: str
    rows: list[UsageRow]
    total: UsageRow


class SummaryOut(BaseModel):
    window: str
    requests: int
    success_rate: float
    latency_p50_ms: float
    latency_p95_ms: float
    total_tokens: int
    cache_hit_rate: float

    @classmethod
    def of(cls, proto: usage_pb2.GetSummaryResponse, *, window: str) -> "SummaryOut":
        figures = {name: getattr(proto, name) for name in cls.model_fields if name != "window"}
        return cls(window=window, **figures)


class QuotaOut(BaseModel):
    allowed: bool
    monthly_limit_usd: float | None  # null: no limit
    spent_usd: float
    reserved_usd: float

    @classmethod
    def of(cls, proto: usage_pb2.CheckQuotaResponse) -> "QuotaOut":
        return cls(
            allowed=proto.allowed,
            monthly_limit_usd=optional_usd(proto, "limit_micros"),
            spent_usd=usd(proto.spent_micros),
            reserved_usd=usd(proto.reserved_micros),
        )


class BudgetOut(BaseModel):
    monthly_limit_usd: float | None  # null: no limit

    @classmethod
    def of(cls, proto: usage_pb2.Budget) -> "BudgetOut":
        return cls(monthly_limit_usd=optional_usd(proto, "monthly_limit_micros"))

    @classmethod
    def of_quota(cls, proto: usage_pb2.CheckQuotaResponse) -> "BudgetOut":
        return cls(monthly_limit_usd=optional_usd(proto, "limit_micros"))


class SectionChangesOut(BaseModel):
    added: int
    changed: int
    removed: int
    unchanged: int


class DocumentUpdateOut(BaseModel):
    """A new version's outcome: `new_version` (queued, same id) or `unchanged` (the same bytes)."""

    document: Document
    outcome: Literal["new_version", "unchanged"]
    sections: SectionChangesOut

    @classmethod
    def of(cls, proto: ingestion_pb2.DocumentUpdate) -> "DocumentUpdateOut":
        return cls.model_validate(
            {
                "document": Document.of(proto.document),
                "outcome": proto.outcome,
                "sections": proto_fields(proto.sections),
            }
        )


# --- A document's sections and a screenplay's reports -------------------------------------------


class SceneOut(BaseModel):
    number: str
    int_ext: str
    location: str
    time_of_day: str
    characters: list[str]


class SectionOut(BaseModel):
    """One section of a document's current version; `scene` only for a screenplay's scenes."""

    id: str
    ordinal: int
    kind: str
    heading: str
    heading_path: list[str]
    page: int | None = None
    tokens: int
    scene: SceneOut | None = None

    @classmethod
    def of(cls, proto: ingestion_pb2.Section) -> "SectionOut":
        return cls.model_validate(proto_fields(proto))


class CharacterOut(BaseModel):
    name: str
    scenes: int
    dialogue_blocks: int
    words: int
    first_scene: str
    last_scene: str
    longest_absence: int
    most_shared_with: NoneIfEmpty = None
    shared_scenes: int


class CharactersOut(BaseModel):
    """Who speaks in a screenplay, most scenes first, counted from its scenes."""

    document_id: str
    characters: list[CharacterOut]

    @classmethod
    def of(cls, document_id: str, proto: ingestion_pb2.CharactersReport) -> "CharactersOut":
        return cls.model_validate({"document_id": document_id, **proto_fields(proto)})


class ScenePacingOut(BaseModel):
    number: str
    heading: str
    lines: int
    eighths: int
    dialogue_share: float


class ActPacingOut(BaseModel):
    act: str
    scenes: int
    pages: float


class PacingOut(BaseModel):
    document_id: str
    pages: int
    scenes: int
    dialogue_share: float
    day_night: dict[str, int]
    int_ext: dict[str, int]
    per_scene: list[ScenePacingOut]
    per_act: list[ActPacingOut]

    @classmethod
    def of(cls, document_id: str, proto: ingestion_pb2.PacingReport) -> "PacingOut":
        return cls.model_validate({"document_id": document_id, **proto_fields(proto)})


# --- A document's artifacts ------------------------------------------------------------------------


class ArtifactOut(BaseModel):
    """A scene card, the outline, a character sheet or a plot thread; `content` is the artifact's
    own JSON, `stale` says the document changed enough since `document_version` to rewrite it."""

    id: str
    kind: str
    key: str
    content: dict[str, Any] = Field(validation_alias="content_json")
    stale: bool
    tokens: int
    model: str
    document_version: int
    updated_at: datetime

    @field_validator("content", mode="before")
    @classmethod
    def _parsed(cls, value: object) -> object:
        return json.loads(value) if isinstance(value, str) else value

    @classmethod
    def of(cls, proto: ingestion_pb2.Artifact) -> "ArtifactOut":
        return cls.model_validate(proto_fields(proto))


class ArtifactsOut(BaseModel):
    document_id: str
    artifacts: list[ArtifactOut]

    @classmethod
    def of(cls, document_id: str, proto: ingestion_pb2.GetArtifactsResponse) -> "ArtifactsOut":
        return cls(document_id=document_id, artifacts=[ArtifactOut.of(artifact) for artifact in proto.artifacts])


# Search


SceneNumber = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20, pattern=NO_NUL)]
# Ingestion writes cue names in upper case (EDWARD); a filter may be typed in any.
CharacterName = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=1, max_length=100, pattern=NO_NUL)
]


def not_a_boolean(value: object) -> object:
    """JSON's true/false is not a number here (pydantic would read it as 1/0); an integral 3.0 is."""
    if isinstance(value, bool):
        raise ValueError("a number, not true or false")
    return value


# The proto's field is an int32.
# The validator after the bounds: before them, pydantic writes them into the schema as unknown
# keywords (`ge`) rather than `minimum`/`maximum`.
PageNumber = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(not_a_boolean)]


class SearchFiltersIn(Body):
    document_ids: Annotated[list[Id], Field(max_length=100)] = []
    # A substring of the chunk's heading, any case.
    heading: Annotated[str, StringConstraints(strip_whitespace=True, max_length=300, pattern=NO_NUL)] = ""
    # A screenplay's scenes, as the script numbers them (any of them).
    scene_numbers: Annotated[list[SceneNumber], Field(max_length=100)] = []
    # Passages whose scene has every one of these characters speaking.
    characters: Annotated[list[CharacterName], Field(max_length=100)] = []
    # Passages on a page in [page_from, page_to]; either may be left out for an open end.
    page_from: PageNumber | None = None
    page_to: PageNumber | None = None

    @model_validator(mode="after")
    def _pages_in_order(self) -> "SearchFiltersIn":
        if self.page_from is not None and self.page_to is not None and self.page_from > self.page_to:
            raise ValueError("page_from must not be after page_to")
        return self


class SearchIn(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"query": "descaling with citric acid", "collection_ids": ["3f1c…"], "mode": "hybrid", "k": 10}
            ]
        }
    )

    query: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS, pattern=NO_NUL)
    ]
    # A search spans at most what a conversation may: chat searches a conversation's collections.
    collection_ids: Annotated[list[Id], Field(min_length=1, max_length=MAX_COLLECTIONS_PER_CONVERSATION)]
    mode: Literal["hybrid", "vector", "keyword"] = "hybrid"
    k: Annotated[int, Field(ge=1, le=MAX_SEARCH_K)] = 10
    filters: SearchFiltersIn = SearchFiltersIn()

    def proto(self) -> retrieval_pb2.SearchRequest:
        return retrieval_pb2.SearchRequest(
            query=self.query,
            collection_ids=self.collection_ids,
            k=self.k,
            mode=f"SEARCH_MODE_{self.mode.upper()}",
            # Left out is the proto's 0: an open end.
            filters=retrieval_pb2.SearchFilters(**self.filters.model_dump(exclude_none=True)),
        )


class SearchHit(FromProto):
    """`snippet` is HTML: the chunk's best passage for the query, escaped, matched words in <mark></mark>."""

    score: float
    snippet: str = Field(validation_alias="highlight")
    chunk_id: str
    document_id: str
    collection_id: str
    document_title: str
    heading: str
    ordinal: int
    # A screenplay's passages only; null elsewhere.
    scene_number: NoneIfEmpty = None
    characters: Annotated[list[str] | None, BeforeValidator(lambda names: list(names) or None)] = None
    page_start: Annotated[int | None, BeforeValidator(lambda page: page or None)] = None
    page_end: Annotated[int | None, BeforeValidator(lambda page: page or None)] = None


class SearchOut(BaseModel):
    data: list[SearchHit]
    degraded: list[str] = Field(
        default_factory=list,
        description='The legs of a hybrid search that could not run: "vector" when the embeddings provider '
        "is unreachable, the hits then being the keyword leg's alone. Empty when the search was whole.",
    )

    @classmethod
    def of(cls, proto: retrieval_pb2.SearchResponse) -> "SearchOut":
        return cls(data=[SearchHit.model_validate(hit) for hit in proto.hits], degraded=list(proto.degraded))
