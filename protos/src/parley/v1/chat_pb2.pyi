import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from parley.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tier(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TIER_UNSPECIFIED: _ClassVar[Tier]
    TIER_QUICK: _ClassVar[Tier]
    TIER_STANDARD: _ClassVar[Tier]
    TIER_DEEP: _ClassVar[Tier]

class TurnState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TURN_STATE_UNSPECIFIED: _ClassVar[TurnState]
    TURN_STATE_RUNNING: _ClassVar[TurnState]
    TURN_STATE_COMPLETED: _ClassVar[TurnState]
    TURN_STATE_FAILED: _ClassVar[TurnState]
    TURN_STATE_CANCELLED: _ClassVar[TurnState]
    TURN_STATE_INTERRUPTED: _ClassVar[TurnState]
TIER_UNSPECIFIED: Tier
TIER_QUICK: Tier
TIER_STANDARD: Tier
TIER_DEEP: Tier
TURN_STATE_UNSPECIFIED: TurnState
TURN_STATE_RUNNING: TurnState
TURN_STATE_COMPLETED: TurnState
TURN_STATE_FAILED: TurnState
TURN_STATE_CANCELLED: TurnState
TURN_STATE_INTERRUPTED: TurnState

class StartTurnRequest(_message.Message):
    __slots__ = ("conversation_id", "collection_ids", "message", "tier", "max_tokens", "provider", "model", "intent_hint", "current_section_id", "temperature")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INTENT_HINT_FIELD_NUMBER: _ClassVar[int]
    CURRENT_SECTION_ID_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    collection_ids: _containers.RepeatedScalarFieldContainer[str]
    message: str
    tier: Tier
    max_tokens: int
    provider: str
    model: str
    intent_hint: str
    current_section_id: str
    temperature: float
    def __init__(self, conversation_id: _Optional[str] = ..., collection_ids: _Optional[_Iterable[str]] = ..., message: _Optional[str] = ..., tier: _Optional[_Union[Tier, str]] = ..., max_tokens: _Optional[int] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., intent_hint: _Optional[str] = ..., current_section_id: _Optional[str] = ..., temperature: _Optional[float] = ...) -> None: ...

class StartTurnResponse(_message.Message):
    __slots__ = ("conversation_id", "turn_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    turn_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., turn_id: _Optional[str] = ...) -> None: ...

class GetTurnRequest(_message.Message):
    __slots__ = ("conversation_id", "turn_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    turn_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., turn_id: _Optional[str] = ...) -> None: ...

class Turn(_message.Message):
    __slots__ = ("id", "conversation_id", "state", "events_kept", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    EVENTS_KEPT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    conversation_id: str
    state: TurnState
    events_kept: bool
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., state: _Optional[_Union[TurnState, str]] = ..., events_kept: _Optional[bool] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CancelTurnRequest(_message.Message):
    __slots__ = ("conversation_id", "turn_id")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    turn_id: str
    def __init__(self, conversation_id: _Optional[str] = ..., turn_id: _Optional[str] = ...) -> None: ...

class CancelTurnResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Source(_message.Message):
    __slots__ = ("index", "chunk_id", "document_id", "collection_id", "document_title", "heading", "snippet", "score")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_TITLE_FIELD_NUMBER: _ClassVar[int]
    HEADING_FIELD_NUMBER: _ClassVar[int]
    SNIPPET_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    index: int
    chunk_id: str
    document_id: str
    collection_id: str
    document_title: str
    heading: str
    snippet: str
    score: float
    def __init__(self, index: _Optional[int] = ..., chunk_id: _Optional[str] = ..., document_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., document_title: _Optional[str] = ..., heading: _Optional[str] = ..., snippet: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Message(_message.Message):
    __slots__ = ("id", "role", "content", "sources", "usage", "model", "turn_id", "created_at", "incomplete", "context_used", "cost_micros")
    ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    INCOMPLETE_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_USED_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    id: str
    role: str
    content: str
    sources: _containers.RepeatedCompositeFieldContainer[Source]
    usage: _common_pb2.TokenUsage
    model: str
    turn_id: str
    created_at: _timestamp_pb2.Timestamp
    incomplete: bool
    context_used: ContextUsed
    cost_micros: int
    def __init__(self, id: _Optional[str] = ..., role: _Optional[str] = ..., content: _Optional[str] = ..., sources: _Optional[_Iterable[_Union[Source, _Mapping]]] = ..., usage: _Optional[_Union[_common_pb2.TokenUsage, _Mapping]] = ..., model: _Optional[str] = ..., turn_id: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., incomplete: _Optional[bool] = ..., context_used: _Optional[_Union[ContextUsed, _Mapping]] = ..., cost_micros: _Optional[int] = ...) -> None: ...

class ContextPart(_message.Message):
    __slots__ = ("name", "tokens")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    name: str
    tokens: int
    def __init__(self, name: _Optional[str] = ..., tokens: _Optional[int] = ...) -> None: ...

class ContextUsed(_message.Message):
    __slots__ = ("intent", "intent_source", "retrieval", "tier", "budget_tokens", "parts", "trimmed", "notes", "cache_read_tokens", "cache_write_tokens", "carried_passages", "tool_calls", "tool_rounds", "conversation_from", "cache_write_1h_tokens")
    INTENT_FIELD_NUMBER: _ClassVar[int]
    INTENT_SOURCE_FIELD_NUMBER: _ClassVar[int]
    RETRIEVAL_FIELD_NUMBER: _ClassVar[int]
    TIER_FIELD_NUMBER: _ClassVar[int]
    BUDGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    TRIMMED_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CARRIED_PASSAGES_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALLS_FIELD_NUMBER: _ClassVar[int]
    TOOL_ROUNDS_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_FROM_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_TOKENS_FIELD_NUMBER: _ClassVar[int]
    intent: str
    intent_source: str
    retrieval: str
    tier: str
    budget_tokens: int
    parts: _containers.RepeatedCompositeFieldContainer[ContextPart]
    trimmed: _containers.RepeatedScalarFieldContainer[str]
    notes: _containers.RepeatedScalarFieldContainer[str]
    cache_read_tokens: int
    cache_write_tokens: int
    carried_passages: int
    tool_calls: _containers.RepeatedCompositeFieldContainer[ToolCall]
    tool_rounds: int
    conversation_from: int
    cache_write_1h_tokens: int
    def __init__(self, intent: _Optional[str] = ..., intent_source: _Optional[str] = ..., retrieval: _Optional[str] = ..., tier: _Optional[str] = ..., budget_tokens: _Optional[int] = ..., parts: _Optional[_Iterable[_Union[ContextPart, _Mapping]]] = ..., trimmed: _Optional[_Iterable[str]] = ..., notes: _Optional[_Iterable[str]] = ..., cache_read_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., carried_passages: _Optional[int] = ..., tool_calls: _Optional[_Iterable[_Union[ToolCall, _Mapping]]] = ..., tool_rounds: _Optional[int] = ..., conversation_from: _Optional[int] = ..., cache_write_1h_tokens: _Optional[int] = ...) -> None: ...

class ToolSpec(_message.Message):
    __slots__ = ("name", "description", "parameters_json")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_JSON_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    parameters_json: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters_json: _Optional[str] = ...) -> None: ...

class ListToolsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListToolsResponse(_message.Message):
    __slots__ = ("tools",)
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    tools: _containers.RepeatedCompositeFieldContainer[ToolSpec]
    def __init__(self, tools: _Optional[_Iterable[_Union[ToolSpec, _Mapping]]] = ...) -> None: ...

class RunToolRequest(_message.Message):
    __slots__ = ("collection_ids", "name", "arguments_json")
    COLLECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ARGUMENTS_JSON_FIELD_NUMBER: _ClassVar[int]
    collection_ids: _containers.RepeatedScalarFieldContainer[str]
    name: str
    arguments_json: str
    def __init__(self, collection_ids: _Optional[_Iterable[str]] = ..., name: _Optional[str] = ..., arguments_json: _Optional[str] = ...) -> None: ...

class RunToolResponse(_message.Message):
    __slots__ = ("result", "is_error")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    result: str
    is_error: bool
    def __init__(self, result: _Optional[str] = ..., is_error: _Optional[bool] = ...) -> None: ...

class ToolCall(_message.Message):
    __slots__ = ("id", "name", "input_json", "round", "result", "is_error")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_JSON_FIELD_NUMBER: _ClassVar[int]
    ROUND_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    IS_ERROR_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    input_json: str
    round: int
    result: str
    is_error: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., input_json: _Optional[str] = ..., round: _Optional[int] = ..., result: _Optional[str] = ..., is_error: _Optional[bool] = ...) -> None: ...

class Conversation(_message.Message):
    __slots__ = ("id", "title", "collection_ids", "messages", "created_at", "updated_at", "next_page_token")
    ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    title: str
    collection_ids: _containers.RepeatedScalarFieldContainer[str]
    messages: _containers.RepeatedCompositeFieldContainer[Message]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    next_page_token: str
    def __init__(self, id: _Optional[str] = ..., title: _Optional[str] = ..., collection_ids: _Optional[_Iterable[str]] = ..., messages: _Optional[_Iterable[_Union[Message, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListConversationsRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListConversationsResponse(_message.Message):
    __slots__ = ("conversations", "next_page_token")
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conversations: _containers.RepeatedCompositeFieldContainer[Conversation]
    next_page_token: str
    def __init__(self, conversations: _Optional[_Iterable[_Union[Conversation, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetConversationRequest(_message.Message):
    __slots__ = ("conversation_id", "page")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    page: _common_pb2.PageRequest
    def __init__(self, conversation_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class DeleteConversationRequest(_message.Message):
    __slots__ = ("conversation_id",)
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    def __init__(self, conversation_id: _Optional[str] = ...) -> None: ...

class DeleteConversationResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportConversationRequest(_message.Message):
    __slots__ = ("conversation_id", "format")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    format: str
    def __init__(self, conversation_id: _Optional[str] = ..., format: _Optional[str] = ...) -> None: ...

class ExportConversationResponse(_message.Message):
    __slots__ = ("content_type", "content")
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    content_type: str
    content: bytes
    def __init__(self, content_type: _Optional[str] = ..., content: _Optional[bytes] = ...) -> None: ...

class SummarizeJob(_message.Message):
    __slots__ = ("tenant_id", "user_id", "conversation_id", "through_messages")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    THROUGH_MESSAGES_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    user_id: str
    conversation_id: str
    through_messages: int
    def __init__(self, tenant_id: _Optional[str] = ..., user_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., through_messages: _Optional[int] = ...) -> None: ...

class CompleteRequest(_message.Message):
    __slots__ = ("system", "prompt", "max_tokens", "provider", "model", "kind", "request_id")
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    system: str
    prompt: str
    max_tokens: int
    provider: str
    model: str
    kind: str
    request_id: str
    def __init__(self, system: _Optional[str] = ..., prompt: _Optional[str] = ..., max_tokens: _Optional[int] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., kind: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class CompleteResponse(_message.Message):
    __slots__ = ("text", "provider", "model", "usage")
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    text: str
    provider: str
    model: str
    usage: _common_pb2.TokenUsage
    def __init__(self, text: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.TokenUsage, _Mapping]] = ...) -> None: ...
