"""Search (routes/search.py, and the MCP server's `search` tool)."""

from typing import Annotated, Literal

from pydantic import AliasChoices, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from parley.gateway.schemas import NO_NUL, Body, FromProto, Id, NamesOrNone, NoneIfEmpty, PageOrNone, not_a_boolean
from parley.kit.contracts import (
    MAX_COLLECTIONS_PER_CONVERSATION,
    MAX_FILTER_VALUES,
    MAX_HEADING_FILTER_CHARS,
    MAX_QUERY_CHARS,
    MAX_SEARCH_K,
)
from parley.v1 import retrieval_pb2

SceneNumber = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20, pattern=NO_NUL)]
# Ingestion writes cue names in upper case (EDWARD); a filter may be typed in any.
CharacterName = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=1, max_length=100, pattern=NO_NUL)
]

# The proto's field is an int32.
# The validator after the bounds: before them, pydantic writes them into the schema as unknown
# keywords (`ge`) rather than `minimum`/`maximum`.
PageNumber = Annotated[int, Field(ge=1, le=2**31 - 1), BeforeValidator(not_a_boolean)]


class SearchFiltersIn(Body):
    """Filters on the passages searched; `page_from` after `page_to` is a 422."""

    # (A default that is a list goes in Field: ruff cannot see that a class based on Body is pydantic's.)
    document_ids: list[Id] = Field(default=[], max_length=MAX_FILTER_VALUES)
    # A substring of the chunk's heading, any case.
    heading: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=MAX_HEADING_FILTER_CHARS, pattern=NO_NUL)
    ] = ""
    # A screenplay's scenes, as the script numbers them (any of them).
    scene_numbers: list[SceneNumber] = Field(default=[], max_length=MAX_FILTER_VALUES)
    # Passages whose scene has every one of these characters speaking.
    characters: list[CharacterName] = Field(default=[], max_length=MAX_FILTER_VALUES)
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


class SearchHit(BaseModel):
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
    characters: NamesOrNone = None
    page_start: PageOrNone = None
    page_end: PageOrNone = None


class SearchOut(FromProto):
    data: list[SearchHit] = Field(validation_alias=AliasChoices("data", "hits"))
    degraded: list[str] = Field(
        default_factory=list,
        description='The legs of a hybrid search that could not run: "vector" when the embeddings provider '
        "is unreachable, the hits then being the keyword leg's alone. Empty when the search was whole.",
    )
