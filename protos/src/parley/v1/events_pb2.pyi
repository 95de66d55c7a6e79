import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from parley.v1 import common_pb2 as _common_pb2
from parley.v1 import chat_pb2 as _chat_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IngestJob(_message.Message):
    __slots__ = ("tenant_id", "document_id", "version")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    document_id: str
    version: int
    def __init__(self, tenant_id: _Optional[str] = ..., document_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class ChunkRecord(_message.Message):
    __slots__ = ("chunk_id", "ordinal", "heading", "text", "token_count", "content_hash", "scene_number", "characters", "page_start", "page_end")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    HEADING_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_HASH_FIELD_NUMBER: _ClassVar[int]
    SCENE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    PAGE_START_FIELD_NUMBER: _ClassVar[int]
    PAGE_END_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    ordinal: int
    heading: str
    text: str
    token_count: int
    content_hash: str
    scene_number: str
    characters: _containers.RepeatedScalarFieldContainer[str]
    page_start: int
    page_end: int
    def __init__(self, chunk_id: _Optional[str] = ..., ordinal: _Optional[int] = ..., heading: _Optional[str] = ..., text: _Optional[str] = ..., token_count: _Optional[int] = ..., content_hash: _Optional[str] = ..., scene_number: _Optional[str] = ..., characters: _Optional[_Iterable[str]] = ..., page_start: _Optional[int] = ..., page_end: _Optional[int] = ...) -> None: ...

class ChunksUpserted(_message.Message):
    __slots__ = ("tenant_id", "collection_id", "document_id", "version", "document_title", "chunks", "part", "parts")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_TITLE_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    PART_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    collection_id: str
    document_id: str
    version: int
    document_title: str
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkRecord]
    part: int
    parts: int
    def __init__(self, tenant_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., document_id: _Optional[str] = ..., version: _Optional[int] = ..., document_title: _Optional[str] = ..., chunks: _Optional[_Iterable[_Union[ChunkRecord, _Mapping]]] = ..., part: _Optional[int] = ..., parts: _Optional[int] = ...) -> None: ...

class ChunksDeleted(_message.Message):
    __slots__ = ("tenant_id", "collection_id", "document_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    collection_id: str
    document_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., document_id: _Optional[str] = ...) -> None: ...

class ChunksIndexed(_message.Message):
    __slots__ = ("tenant_id", "document_id", "version", "chunk_count", "error")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    document_id: str
    version: int
    chunk_count: int
    error: str
    def __init__(self, tenant_id: _Optional[str] = ..., document_id: _Optional[str] = ..., version: _Optional[int] = ..., chunk_count: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class TurnEvent(_message.Message):
    __slots__ = ("conversation_id", "turn_id", "seq", "delta", "sources", "usage", "end", "error", "tool_call", "tool_result")
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TOOL_CALL_FIELD_NUMBER: _ClassVar[int]
    TOOL_RESULT_FIELD_NUMBER: _ClassVar[int]
    conversation_id: str
    turn_id: str
    seq: int
    delta: TurnDelta
    sources: TurnSources
    usage: TurnUsage
    end: TurnEnd
    error: TurnError
    tool_call: _chat_pb2.ToolCall
    tool_result: _chat_pb2.ToolCall
    def __init__(self, conversation_id: _Optional[str] = ..., turn_id: _Optional[str] = ..., seq: _Optional[int] = ..., delta: _Optional[_Union[TurnDelta, _Mapping]] = ..., sources: _Optional[_Union[TurnSources, _Mapping]] = ..., usage: _Optional[_Union[TurnUsage, _Mapping]] = ..., end: _Optional[_Union[TurnEnd, _Mapping]] = ..., error: _Optional[_Union[TurnError, _Mapping]] = ..., tool_call: _Optional[_Union[_chat_pb2.ToolCall, _Mapping]] = ..., tool_result: _Optional[_Union[_chat_pb2.ToolCall, _Mapping]] = ...) -> None: ...

class TurnDelta(_message.Message):
    __slots__ = ("text",)
    TEXT_FIELD_NUMBER: _ClassVar[int]
    text: str
    def __init__(self, text: _Optional[str] = ...) -> None: ...

class TurnSources(_message.Message):
    __slots__ = ("sources",)
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    sources: _containers.RepeatedCompositeFieldContainer[_chat_pb2.Source]
    def __init__(self, sources: _Optional[_Iterable[_Union[_chat_pb2.Source, _Mapping]]] = ...) -> None: ...

class TurnUsage(_message.Message):
    __slots__ = ("usage", "model", "cost_micros", "context_used")
    USAGE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_USED_FIELD_NUMBER: _ClassVar[int]
    usage: _common_pb2.TokenUsage
    model: str
    cost_micros: int
    context_used: _chat_pb2.ContextUsed
    def __init__(self, usage: _Optional[_Union[_common_pb2.TokenUsage, _Mapping]] = ..., model: _Optional[str] = ..., cost_micros: _Optional[int] = ..., context_used: _Optional[_Union[_chat_pb2.ContextUsed, _Mapping]] = ...) -> None: ...

class TurnEnd(_message.Message):
    __slots__ = ("user_message_id", "assistant_message_id", "finish_reason", "created_at")
    USER_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    ASSISTANT_MESSAGE_ID_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    user_message_id: str
    assistant_message_id: str
    finish_reason: str
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, user_message_id: _Optional[str] = ..., assistant_message_id: _Optional[str] = ..., finish_reason: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class TurnError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class CancelTurnCommand(_message.Message):
    __slots__ = ("tenant_id", "user_id", "conversation_id", "turn_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    TURN_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    user_id: str
    conversation_id: str
    turn_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., user_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., turn_id: _Optional[str] = ...) -> None: ...

class UsageRecorded(_message.Message):
    __slots__ = ("event_id", "tenant_id", "user_id", "kind", "provider", "model", "usage", "reservation_id", "conversation_id", "request_id", "latency_ms", "success", "occurred_at", "billed_at_hold", "api_key_id")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    CONVERSATION_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    OCCURRED_AT_FIELD_NUMBER: _ClassVar[int]
    BILLED_AT_HOLD_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    event_id: str
    tenant_id: str
    user_id: str
    kind: str
    provider: str
    model: str
    usage: _common_pb2.TokenUsage
    reservation_id: str
    conversation_id: str
    request_id: str
    latency_ms: int
    success: bool
    occurred_at: _timestamp_pb2.Timestamp
    billed_at_hold: bool
    api_key_id: str
    def __init__(self, event_id: _Optional[str] = ..., tenant_id: _Optional[str] = ..., user_id: _Optional[str] = ..., kind: _Optional[str] = ..., provider: _Optional[str] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.TokenUsage, _Mapping]] = ..., reservation_id: _Optional[str] = ..., conversation_id: _Optional[str] = ..., request_id: _Optional[str] = ..., latency_ms: _Optional[int] = ..., success: _Optional[bool] = ..., occurred_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., billed_at_hold: _Optional[bool] = ..., api_key_id: _Optional[str] = ...) -> None: ...

class AnalyzeJob(_message.Message):
    __slots__ = ("tenant_id", "document_id", "version")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    document_id: str
    version: int
    def __init__(self, tenant_id: _Optional[str] = ..., document_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class BudgetAlert(_message.Message):
    __slots__ = ("tenant_id", "scope", "user_id", "spent_micros", "alert_at_micros", "limit_micros", "at", "api_key_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SCOPE_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    SPENT_MICROS_FIELD_NUMBER: _ClassVar[int]
    ALERT_AT_MICROS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    API_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    scope: str
    user_id: str
    spent_micros: int
    alert_at_micros: int
    limit_micros: int
    at: _timestamp_pb2.Timestamp
    api_key_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., scope: _Optional[str] = ..., user_id: _Optional[str] = ..., spent_micros: _Optional[int] = ..., alert_at_micros: _Optional[int] = ..., limit_micros: _Optional[int] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., api_key_id: _Optional[str] = ...) -> None: ...
