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

class DocumentStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DOCUMENT_STATUS_UNSPECIFIED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_QUEUED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_CHUNKING: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_INDEXING: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_READY: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_FAILED: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_PARSING: _ClassVar[DocumentStatus]
    DOCUMENT_STATUS_ANALYZING: _ClassVar[DocumentStatus]
DOCUMENT_STATUS_UNSPECIFIED: DocumentStatus
DOCUMENT_STATUS_QUEUED: DocumentStatus
DOCUMENT_STATUS_CHUNKING: DocumentStatus
DOCUMENT_STATUS_INDEXING: DocumentStatus
DOCUMENT_STATUS_READY: DocumentStatus
DOCUMENT_STATUS_FAILED: DocumentStatus
DOCUMENT_STATUS_PARSING: DocumentStatus
DOCUMENT_STATUS_ANALYZING: DocumentStatus

class Collection(_message.Message):
    __slots__ = ("id", "name", "description", "document_count", "created_at")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    document_count: int
    created_at: _timestamp_pb2.Timestamp
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., document_count: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class CreateCollectionRequest(_message.Message):
    __slots__ = ("name", "description")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ...) -> None: ...

class GetCollectionRequest(_message.Message):
    __slots__ = ("collection_id",)
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    collection_id: str
    def __init__(self, collection_id: _Optional[str] = ...) -> None: ...

class ListCollectionsRequest(_message.Message):
    __slots__ = ("page",)
    PAGE_FIELD_NUMBER: _ClassVar[int]
    page: _common_pb2.PageRequest
    def __init__(self, page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListCollectionsResponse(_message.Message):
    __slots__ = ("collections", "next_page_token")
    COLLECTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    collections: _containers.RepeatedCompositeFieldContainer[Collection]
    next_page_token: str
    def __init__(self, collections: _Optional[_Iterable[_Union[Collection, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteCollectionRequest(_message.Message):
    __slots__ = ("collection_id",)
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    collection_id: str
    def __init__(self, collection_id: _Optional[str] = ...) -> None: ...

class DeleteCollectionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Document(_message.Message):
    __slots__ = ("id", "collection_id", "title", "content_type", "status", "version", "size_bytes", "chunk_count", "token_count", "error", "content_sha256", "created_at", "updated_at", "failed_stage", "done", "total", "message", "analysis_state")
    ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    FAILED_STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ANALYSIS_STATE_FIELD_NUMBER: _ClassVar[int]
    id: str
    collection_id: str
    title: str
    content_type: str
    status: DocumentStatus
    version: int
    size_bytes: int
    chunk_count: int
    token_count: int
    error: str
    content_sha256: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    failed_stage: str
    done: int
    total: int
    message: str
    analysis_state: str
    def __init__(self, id: _Optional[str] = ..., collection_id: _Optional[str] = ..., title: _Optional[str] = ..., content_type: _Optional[str] = ..., status: _Optional[_Union[DocumentStatus, str]] = ..., version: _Optional[int] = ..., size_bytes: _Optional[int] = ..., chunk_count: _Optional[int] = ..., token_count: _Optional[int] = ..., error: _Optional[str] = ..., content_sha256: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., failed_stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., message: _Optional[str] = ..., analysis_state: _Optional[str] = ...) -> None: ...

class DocumentHeader(_message.Message):
    __slots__ = ("collection_id", "title", "content_type", "filename", "priority")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    collection_id: str
    title: str
    content_type: str
    filename: str
    priority: str
    def __init__(self, collection_id: _Optional[str] = ..., title: _Optional[str] = ..., content_type: _Optional[str] = ..., filename: _Optional[str] = ..., priority: _Optional[str] = ...) -> None: ...

class IngestDocumentRequest(_message.Message):
    __slots__ = ("header", "content")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    header: DocumentHeader
    content: bytes
    def __init__(self, header: _Optional[_Union[DocumentHeader, _Mapping]] = ..., content: _Optional[bytes] = ...) -> None: ...

class VersionHeader(_message.Message):
    __slots__ = ("document_id", "content_type", "filename", "priority")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    content_type: str
    filename: str
    priority: str
    def __init__(self, document_id: _Optional[str] = ..., content_type: _Optional[str] = ..., filename: _Optional[str] = ..., priority: _Optional[str] = ...) -> None: ...

class UpdateDocumentRequest(_message.Message):
    __slots__ = ("header", "content")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    header: VersionHeader
    content: bytes
    def __init__(self, header: _Optional[_Union[VersionHeader, _Mapping]] = ..., content: _Optional[bytes] = ...) -> None: ...

class SectionChanges(_message.Message):
    __slots__ = ("added", "changed", "removed", "unchanged")
    ADDED_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    added: int
    changed: int
    removed: int
    unchanged: int
    def __init__(self, added: _Optional[int] = ..., changed: _Optional[int] = ..., removed: _Optional[int] = ..., unchanged: _Optional[int] = ...) -> None: ...

class DocumentUpdate(_message.Message):
    __slots__ = ("document", "outcome", "sections")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    SECTIONS_FIELD_NUMBER: _ClassVar[int]
    document: Document
    outcome: str
    sections: SectionChanges
    def __init__(self, document: _Optional[_Union[Document, _Mapping]] = ..., outcome: _Optional[str] = ..., sections: _Optional[_Union[SectionChanges, _Mapping]] = ...) -> None: ...

class GetDocumentRequest(_message.Message):
    __slots__ = ("document_id",)
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    def __init__(self, document_id: _Optional[str] = ...) -> None: ...

class ListDocumentsRequest(_message.Message):
    __slots__ = ("collection_id", "page")
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    collection_id: str
    page: _common_pb2.PageRequest
    def __init__(self, collection_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListDocumentsResponse(_message.Message):
    __slots__ = ("documents", "next_page_token")
    DOCUMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    documents: _containers.RepeatedCompositeFieldContainer[Document]
    next_page_token: str
    def __init__(self, documents: _Optional[_Iterable[_Union[Document, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class DeleteDocumentRequest(_message.Message):
    __slots__ = ("document_id",)
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    def __init__(self, document_id: _Optional[str] = ...) -> None: ...

class DeleteDocumentResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class WatchDocumentRequest(_message.Message):
    __slots__ = ("document_id",)
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    def __init__(self, document_id: _Optional[str] = ...) -> None: ...

class GetArtifactsRequest(_message.Message):
    __slots__ = ("document_id", "kinds", "fresh")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    KINDS_FIELD_NUMBER: _ClassVar[int]
    FRESH_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    kinds: _containers.RepeatedScalarFieldContainer[str]
    fresh: bool
    def __init__(self, document_id: _Optional[str] = ..., kinds: _Optional[_Iterable[str]] = ..., fresh: _Optional[bool] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("id", "document_id", "kind", "key", "content_json", "stale", "updated_at", "tokens", "model", "document_version")
    ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONTENT_JSON_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    id: str
    document_id: str
    kind: str
    key: str
    content_json: str
    stale: bool
    updated_at: _timestamp_pb2.Timestamp
    tokens: int
    model: str
    document_version: int
    def __init__(self, id: _Optional[str] = ..., document_id: _Optional[str] = ..., kind: _Optional[str] = ..., key: _Optional[str] = ..., content_json: _Optional[str] = ..., stale: _Optional[bool] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., tokens: _Optional[int] = ..., model: _Optional[str] = ..., document_version: _Optional[int] = ...) -> None: ...

class GetArtifactsResponse(_message.Message):
    __slots__ = ("artifacts",)
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    def __init__(self, artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ...) -> None: ...

class GetSectionRequest(_message.Message):
    __slots__ = ("document_id", "ordinal")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    ordinal: int
    def __init__(self, document_id: _Optional[str] = ..., ordinal: _Optional[int] = ...) -> None: ...

class Section(_message.Message):
    __slots__ = ("document_id", "ordinal", "heading", "text", "content_sha256", "id", "kind", "heading_path", "page", "tokens", "scene")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    HEADING_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_SHA256_FIELD_NUMBER: _ClassVar[int]
    ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    HEADING_PATH_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    SCENE_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    ordinal: int
    heading: str
    text: str
    content_sha256: str
    id: str
    kind: str
    heading_path: _containers.RepeatedScalarFieldContainer[str]
    page: int
    tokens: int
    scene: Scene
    def __init__(self, document_id: _Optional[str] = ..., ordinal: _Optional[int] = ..., heading: _Optional[str] = ..., text: _Optional[str] = ..., content_sha256: _Optional[str] = ..., id: _Optional[str] = ..., kind: _Optional[str] = ..., heading_path: _Optional[_Iterable[str]] = ..., page: _Optional[int] = ..., tokens: _Optional[int] = ..., scene: _Optional[_Union[Scene, _Mapping]] = ...) -> None: ...

class Scene(_message.Message):
    __slots__ = ("number", "heading", "int_ext", "location", "time_of_day", "characters", "dialogue_lines", "action_lines", "lines", "start_page", "act_path", "forced")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    HEADING_FIELD_NUMBER: _ClassVar[int]
    INT_EXT_FIELD_NUMBER: _ClassVar[int]
    LOCATION_FIELD_NUMBER: _ClassVar[int]
    TIME_OF_DAY_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    DIALOGUE_LINES_FIELD_NUMBER: _ClassVar[int]
    ACTION_LINES_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    START_PAGE_FIELD_NUMBER: _ClassVar[int]
    ACT_PATH_FIELD_NUMBER: _ClassVar[int]
    FORCED_FIELD_NUMBER: _ClassVar[int]
    number: str
    heading: str
    int_ext: str
    location: str
    time_of_day: str
    characters: _containers.RepeatedScalarFieldContainer[str]
    dialogue_lines: int
    action_lines: int
    lines: int
    start_page: int
    act_path: _containers.RepeatedScalarFieldContainer[str]
    forced: bool
    def __init__(self, number: _Optional[str] = ..., heading: _Optional[str] = ..., int_ext: _Optional[str] = ..., location: _Optional[str] = ..., time_of_day: _Optional[str] = ..., characters: _Optional[_Iterable[str]] = ..., dialogue_lines: _Optional[int] = ..., action_lines: _Optional[int] = ..., lines: _Optional[int] = ..., start_page: _Optional[int] = ..., act_path: _Optional[_Iterable[str]] = ..., forced: _Optional[bool] = ...) -> None: ...

class ListSectionsRequest(_message.Message):
    __slots__ = ("document_id", "page")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    page: _common_pb2.PageRequest
    def __init__(self, document_id: _Optional[str] = ..., page: _Optional[_Union[_common_pb2.PageRequest, _Mapping]] = ...) -> None: ...

class ListSectionsResponse(_message.Message):
    __slots__ = ("sections", "next_page_token")
    SECTIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sections: _containers.RepeatedCompositeFieldContainer[Section]
    next_page_token: str
    def __init__(self, sections: _Optional[_Iterable[_Union[Section, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetCharactersRequest(_message.Message):
    __slots__ = ("document_id",)
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    def __init__(self, document_id: _Optional[str] = ...) -> None: ...

class CharacterReport(_message.Message):
    __slots__ = ("name", "scenes", "dialogue_blocks", "words", "first_scene", "last_scene", "longest_absence", "most_shared_with", "shared_scenes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    DIALOGUE_BLOCKS_FIELD_NUMBER: _ClassVar[int]
    WORDS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SCENE_FIELD_NUMBER: _ClassVar[int]
    LAST_SCENE_FIELD_NUMBER: _ClassVar[int]
    LONGEST_ABSENCE_FIELD_NUMBER: _ClassVar[int]
    MOST_SHARED_WITH_FIELD_NUMBER: _ClassVar[int]
    SHARED_SCENES_FIELD_NUMBER: _ClassVar[int]
    name: str
    scenes: int
    dialogue_blocks: int
    words: int
    first_scene: str
    last_scene: str
    longest_absence: int
    most_shared_with: str
    shared_scenes: int
    def __init__(self, name: _Optional[str] = ..., scenes: _Optional[int] = ..., dialogue_blocks: _Optional[int] = ..., words: _Optional[int] = ..., first_scene: _Optional[str] = ..., last_scene: _Optional[str] = ..., longest_absence: _Optional[int] = ..., most_shared_with: _Optional[str] = ..., shared_scenes: _Optional[int] = ...) -> None: ...

class CharactersReport(_message.Message):
    __slots__ = ("characters",)
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    characters: _containers.RepeatedCompositeFieldContainer[CharacterReport]
    def __init__(self, characters: _Optional[_Iterable[_Union[CharacterReport, _Mapping]]] = ...) -> None: ...

class GetPacingRequest(_message.Message):
    __slots__ = ("document_id",)
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    def __init__(self, document_id: _Optional[str] = ...) -> None: ...

class ScenePacing(_message.Message):
    __slots__ = ("number", "heading", "lines", "eighths", "dialogue_share")
    NUMBER_FIELD_NUMBER: _ClassVar[int]
    HEADING_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    EIGHTHS_FIELD_NUMBER: _ClassVar[int]
    DIALOGUE_SHARE_FIELD_NUMBER: _ClassVar[int]
    number: str
    heading: str
    lines: int
    eighths: int
    dialogue_share: float
    def __init__(self, number: _Optional[str] = ..., heading: _Optional[str] = ..., lines: _Optional[int] = ..., eighths: _Optional[int] = ..., dialogue_share: _Optional[float] = ...) -> None: ...

class ActPacing(_message.Message):
    __slots__ = ("act", "scenes", "pages")
    ACT_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    PAGES_FIELD_NUMBER: _ClassVar[int]
    act: str
    scenes: int
    pages: float
    def __init__(self, act: _Optional[str] = ..., scenes: _Optional[int] = ..., pages: _Optional[float] = ...) -> None: ...

class PacingReport(_message.Message):
    __slots__ = ("pages", "scenes", "dialogue_share", "day_night", "int_ext", "per_scene", "per_act")
    class DayNightEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class IntExtEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    PAGES_FIELD_NUMBER: _ClassVar[int]
    SCENES_FIELD_NUMBER: _ClassVar[int]
    DIALOGUE_SHARE_FIELD_NUMBER: _ClassVar[int]
    DAY_NIGHT_FIELD_NUMBER: _ClassVar[int]
    INT_EXT_FIELD_NUMBER: _ClassVar[int]
    PER_SCENE_FIELD_NUMBER: _ClassVar[int]
    PER_ACT_FIELD_NUMBER: _ClassVar[int]
    pages: int
    scenes: int
    dialogue_share: float
    day_night: _containers.ScalarMap[str, int]
    int_ext: _containers.ScalarMap[str, int]
    per_scene: _containers.RepeatedCompositeFieldContainer[ScenePacing]
    per_act: _containers.RepeatedCompositeFieldContainer[ActPacing]
    def __init__(self, pages: _Optional[int] = ..., scenes: _Optional[int] = ..., dialogue_share: _Optional[float] = ..., day_night: _Optional[_Mapping[str, int]] = ..., int_ext: _Optional[_Mapping[str, int]] = ..., per_scene: _Optional[_Iterable[_Union[ScenePacing, _Mapping]]] = ..., per_act: _Optional[_Iterable[_Union[ActPacing, _Mapping]]] = ...) -> None: ...

class DocumentProgress(_message.Message):
    __slots__ = ("tenant_id", "document_id", "collection_id", "status", "chunk_count", "error", "at", "version", "failed_stage", "done", "total", "message")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CHUNK_COUNT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FAILED_STAGE_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    document_id: str
    collection_id: str
    status: DocumentStatus
    chunk_count: int
    error: str
    at: _timestamp_pb2.Timestamp
    version: int
    failed_stage: str
    done: int
    total: int
    message: str
    def __init__(self, tenant_id: _Optional[str] = ..., document_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., status: _Optional[_Union[DocumentStatus, str]] = ..., chunk_count: _Optional[int] = ..., error: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., failed_stage: _Optional[str] = ..., done: _Optional[int] = ..., total: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class ListDeadLettersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("seq", "document_id", "version", "subject", "deliveries", "reason", "parked_at", "consumer")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    DELIVERIES_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PARKED_AT_FIELD_NUMBER: _ClassVar[int]
    CONSUMER_FIELD_NUMBER: _ClassVar[int]
    seq: int
    document_id: str
    version: int
    subject: str
    deliveries: int
    reason: str
    parked_at: _timestamp_pb2.Timestamp
    consumer: str
    def __init__(self, seq: _Optional[int] = ..., document_id: _Optional[str] = ..., version: _Optional[int] = ..., subject: _Optional[str] = ..., deliveries: _Optional[int] = ..., reason: _Optional[str] = ..., parked_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., consumer: _Optional[str] = ...) -> None: ...

class ListDeadLettersResponse(_message.Message):
    __slots__ = ("dead_letters",)
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    dead_letters: _containers.RepeatedCompositeFieldContainer[DeadLetter]
    def __init__(self, dead_letters: _Optional[_Iterable[_Union[DeadLetter, _Mapping]]] = ...) -> None: ...

class ReplayDeadLetterRequest(_message.Message):
    __slots__ = ("seq",)
    SEQ_FIELD_NUMBER: _ClassVar[int]
    seq: int
    def __init__(self, seq: _Optional[int] = ...) -> None: ...
