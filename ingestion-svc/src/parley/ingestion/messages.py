"""Records as protobuf messages: every field a message shares by name with a record, so a new
field is one edit in the message and one in the record, never a third in a copy list."""

import uuid
from dataclasses import fields, is_dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.message import Message

from parley.ingestion.models import Status
from parley.kit.timestamps import to_timestamp
from parley.v1 import ingestion_pb2

M = TypeVar("M", bound=Message)


def status_proto(status: Status) -> int:
    return ingestion_pb2.DocumentStatus.Value(f"DOCUMENT_STATUS_{status.value}")


def _proto_value(value: object) -> object:
    if isinstance(value, Status):
        return status_proto(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return to_timestamp(value)
    return value


def to_proto(message_type: type[M], record: object, **overrides: object) -> M:
    """`message_type` filled from the record's same-named fields (uuids as strings, times as
    Timestamps, statuses as DocumentStatus), then from `overrides`."""
    if not is_dataclass(record):
        raise TypeError(f"{type(record).__name__} is not a record")
    wanted = set(message_type.DESCRIPTOR.fields_by_name)
    values: dict[str, Any] = {
        field.name: _proto_value(getattr(record, field.name)) for field in fields(record) if field.name in wanted
    }
    values.update(overrides)
    return message_type(**values)
