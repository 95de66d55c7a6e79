from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SearchMode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEARCH_MODE_UNSPECIFIED: _ClassVar[SearchMode]
    SEARCH_MODE_VECTOR: _ClassVar[SearchMode]
    SEARCH_MODE_KEYWORD: _ClassVar[SearchMode]
    SEARCH_MODE_HYBRID: _ClassVar[SearchMode]
SEARCH_MODE_UNSPECIFIED: SearchMode
SEARCH_MODE_VECTOR: SearchMode
SEARCH_MODE_KEYWORD: SearchMode
SEARCH_MODE_HYBRID: SearchMode

class SearchFilters(_message.Message):
    __slots__ = ("document_ids", "heading", "scene_numbers", "characters", "page_from", "page_to")
    DOCUMENT_IDS_FIELD_NUMBER: _ClassVar[int]
    HEADING_FIELD_NUMBER: _ClassVar[int]
    SCENE_NUMBERS_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    PAGE_FROM_FIELD_NUMBER: _ClassVar[int]
    PAGE_TO_FIELD_NUMBER: _ClassVar[int]
    document_ids: _containers.RepeatedScalarFieldContainer[str]
    heading: str
    scene_numbers: _containers.RepeatedScalarFieldContainer[str]
    characters: _containers.RepeatedScalarFieldContainer[str]
    page_from: int
    page_to: int
    def __init__(self, document_ids: _Optional[_Iterable[str]] = ..., heading: _Optional[str] = ..., scene_numbers: _Optional[_Iterable[str]] = ..., characters: _Optional[_Iterable[str]] = ..., page_from: _Optional[int] = ..., page_to: _Optional[int] = ...) -> None: ...

class SearchRequest(_message.Message):
    __slots__ = ("query", "collection_ids", "k", "mode", "filters")
    QUERY_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    FILTERS_FIELD_NUMBER: _ClassVar[int]
    query: str
    collection_ids: _containers.RepeatedScalarFieldContainer[str]
    k: int
    mode: SearchMode
    filters: SearchFilters
    def __init__(self, query: _Optional[str] = ..., collection_ids: _Optional[_Iterable[str]] = ..., k: _Optional[int] = ..., mode: _Optional[_Union[SearchMode, str]] = ..., filters: _Optional[_Union[SearchFilters, _Mapping]] = ...) -> None: ...

class ChunkHit(_message.Message):
    __slots__ = ("chunk_id", "document_id", "collection_id", "document_title", "ordinal", "heading", "text", "token_count", "score", "highlight", "scene_number", "characters", "page_start", "page_end")
    CHUNK_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_ID_FIELD_NUMBER: _ClassVar[int]
    DOCUMENT_TITLE_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    HEADING_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_COUNT_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    HIGHLIGHT_FIELD_NUMBER: _ClassVar[int]
    SCENE_NUMBER_FIELD_NUMBER: _ClassVar[int]
    CHARACTERS_FIELD_NUMBER: _ClassVar[int]
    PAGE_START_FIELD_NUMBER: _ClassVar[int]
    PAGE_END_FIELD_NUMBER: _ClassVar[int]
    chunk_id: str
    document_id: str
    collection_id: str
    document_title: str
    ordinal: int
    heading: str
    text: str
    token_count: int
    score: float
    highlight: str
    scene_number: str
    characters: _containers.RepeatedScalarFieldContainer[str]
    page_start: int
    page_end: int
    def __init__(self, chunk_id: _Optional[str] = ..., document_id: _Optional[str] = ..., collection_id: _Optional[str] = ..., document_title: _Optional[str] = ..., ordinal: _Optional[int] = ..., heading: _Optional[str] = ..., text: _Optional[str] = ..., token_count: _Optional[int] = ..., score: _Optional[float] = ..., highlight: _Optional[str] = ..., scene_number: _Optional[str] = ..., characters: _Optional[_Iterable[str]] = ..., page_start: _Optional[int] = ..., page_end: _Optional[int] = ...) -> None: ...

class SearchResponse(_message.Message):
    __slots__ = ("hits", "degraded")
    HITS_FIELD_NUMBER: _ClassVar[int]
    DEGRADED_FIELD_NUMBER: _ClassVar[int]
    hits: _containers.RepeatedCompositeFieldContainer[ChunkHit]
    degraded: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, hits: _Optional[_Iterable[_Union[ChunkHit, _Mapping]]] = ..., degraded: _Optional[_Iterable[str]] = ...) -> None: ...

class GetNeighborsRequest(_message.Message):
    __slots__ = ("document_id", "ordinal", "before", "after")
    DOCUMENT_ID_FIELD_NUMBER: _ClassVar[int]
    ORDINAL_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    document_id: str
    ordinal: int
    before: int
    after: int
    def __init__(self, document_id: _Optional[str] = ..., ordinal: _Optional[int] = ..., before: _Optional[int] = ..., after: _Optional[int] = ...) -> None: ...

class GetNeighborsResponse(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkHit]
    def __init__(self, chunks: _Optional[_Iterable[_Union[ChunkHit, _Mapping]]] = ...) -> None: ...

class GetChunksRequest(_message.Message):
    __slots__ = ("chunk_ids",)
    CHUNK_IDS_FIELD_NUMBER: _ClassVar[int]
    chunk_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, chunk_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GetChunksResponse(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[ChunkHit]
    def __init__(self, chunks: _Optional[_Iterable[_Union[ChunkHit, _Mapping]]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("texts", "collection_ids")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    COLLECTION_IDS_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    collection_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., collection_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("values",)
    VALUES_FIELD_NUMBER: _ClassVar[int]
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("model", "dimensions", "embeddings", "input_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    dimensions: int
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    input_tokens: int
    def __init__(self, model: _Optional[str] = ..., dimensions: _Optional[int] = ..., embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ..., input_tokens: _Optional[int] = ...) -> None: ...
