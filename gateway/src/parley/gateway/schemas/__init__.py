"""The public HTTP API's bodies: what clients send (validated) and what they get back, one module
per router (`schemas.collections`, `schemas.documents`, `schemas.chat`, …); what they share is here.

Every response built from a backend's proto is a `FromProto` and is built one way, `Model.of(proto,
**extra)`: the proto's fields under their proto names (`proto_fields`), validated by the model —
times as ISO 8601, enums as their words, micro-USD (`*_micros`) as USD (`*_usd`), an unset optional
field as null — so every route returns the same shape for the same thing and none copies fields
by hand.
"""

from typing import Annotated, Any, Generic, Self, TypeVar

from fastapi import Path, Query
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message as ProtoMessage
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from parley.kit.contracts import MAX_ID_CHARS, MAX_NAME_CHARS, MAX_PAGE_TOKEN_CHARS
from parley.kit.paging import MAX_PAGE_SIZE, PAGE_TOKEN_PATTERN

# PostgreSQL text cannot hold NUL; refused here, with the field's name, rather than failing later.
NO_NUL = r"^[^\x00]*$"
# No NUL, and at least one character that is not blank: a name or message of only spaces (or of
# the separators \x1c-\x1f, which Python's `str.strip` drops too) is refused, and the document says so.
NOT_BLANK = r"^[^\x00]*[^\s\x00\x1c-\x1f][^\x00]*$"
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_NAME_CHARS, pattern=NOT_BLANK)
]
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS, pattern=r"^[A-Za-z0-9-]+$")]
NoneIfEmpty = Annotated[str | None, BeforeValidator(lambda value: value or None)]
# A screenplay passage's characters and pages: null for other documents (retrieval leaves them empty).
NamesOrNone = Annotated[list[str] | None, BeforeValidator(lambda names: list(names) or None)]
PageOrNone = Annotated[int | None, BeforeValidator(lambda page: page or None)]

# An id in a path: no id is longer (the front door already answers 404 for a longer segment).
IdPath = Annotated[str, Path(max_length=MAX_ID_CHARS)]

# A list's query parameters: the services' own page size bound (kit.paging; the default is
# `paging.DEFAULT_PAGE_SIZE`) and token bound and shape (a token of another shape is a 422; one of
# this shape the service did not issue, a 400).
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
PageToken = Annotated[
    str,
    Query(
        max_length=MAX_PAGE_TOKEN_CHARS,
        pattern=PAGE_TOKEN_PATTERN,
        description="the `next_page_token` of the page before; empty: the first page. Any other is a 400.",
    ),
]

MICROS_PER_USD = 1_000_000
# An amount of money a client sets (a budget, an alert). Strict: `false` or "5" is not one.
Usd = Annotated[float, Field(ge=0, le=1_000_000, strict=True)]


def usd(micros: int) -> float:
    return micros / MICROS_PER_USD


def micros(usd: float) -> int:
    return round(usd * MICROS_PER_USD)


def maybe_usd(micros: int | None) -> float | None:
    """None (not set: no limit, no alert) stays None."""
    return None if micros is None else usd(micros)


def maybe_micros(usd: float | None) -> int | None:
    return None if usd is None else micros(usd)


def optional_usd(message: ProtoMessage, field: str) -> float | None:
    """An optional micro-USD field in USD; None (no limit, not known) when it is unset."""
    return usd(getattr(message, field)) if message.HasField(field) else None


def not_a_boolean(value: object) -> object:
    """JSON's true/false is not a number here (pydantic would read it as 1/0); an integral 3.0 is."""
    if isinstance(value, bool):
        raise ValueError("a number, not true or false")
    return value


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


T = TypeVar("T")


class Page(BaseModel, Generic[T]):
    data: list[T]
    next_page_token: str | None


def proto_fields(proto: ProtoMessage) -> dict[str, Any]:
    """A proto as a dict of its fields, under their proto names (int64s as ints, times as ISO
    8601, enums as their names, unset messages left out)."""
    return MessageToDict(
        proto,
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
        unquote_int64_if_possible=True,
    )


class FromProto(BaseModel):
    """A response built from a backend's proto by its same-named fields: `Model.of(proto)`."""

    @model_validator(mode="before")
    @classmethod
    def _micros_in_usd(cls, fields: Any) -> Any:
        # The services count micro-USD (`cost_micros`); the API says USD (`cost_usd`).
        if not isinstance(fields, dict):
            return fields
        converted: dict[str, Any] = {}
        for name, value in fields.items():
            if isinstance(name, str) and name.endswith("_micros"):
                converted[name.removesuffix("_micros") + "_usd"] = None if value is None else usd(int(value))
            else:
                converted[name] = value
        return converted

    @classmethod
    def of(cls, proto: ProtoMessage, **extra: Any) -> Self:
        """The model of a proto; `extra` sets what the proto does not carry (or replaces it)."""
        fields = proto_fields(proto)
        for field in proto.DESCRIPTOR.fields:
            # An optional field left unset is null, not missing: "no limit", "not known".
            if field.has_presence and not proto.HasField(field.name):
                fields.setdefault(field.name, None)
        return cls.model_validate({**fields, **extra})
