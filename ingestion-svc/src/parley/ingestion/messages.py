"""Records as protobuf messages: every field a message shares by name with a record, so a new
field is one edit in the message and one in the record, never a third in a copy list."""

import json
import uuid
from dataclasses import asdict, fields, is_dataclass
from datetime import datetime
from typing import Any, TypeVar

from google.protobuf.json_format import ParseDict
from google.protobuf.message import Message

from parley.ingestion.models import Status
from parley.ingestion.store import ArtifactRecord
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
    Timestamps, statuses as DocumentStatus, a nested record as its message, None left unset),
    then from `overrides`."""
    if not is_dataclass(record) or isinstance(record, type):
        raise TypeError(f"{type(record).__name__} is not a record")
    empty = message_type()
    wanted = set(message_type.DESCRIPTOR.fields_by_name)
    values: dict[str, Any] = {}
    for field in fields(record):
        value = getattr(record, field.name)
        if field.name not in wanted or value is None:
            continue
        if is_dataclass(value) and not isinstance(value, type):
            values[field.name] = to_proto(type(getattr(empty, field.name)), value)
        else:
            values[field.name] = _proto_value(value)
    values.update(overrides)
    return message_type(**values)


def report_proto(message_type: type[M], report: object) -> M:
    """A report (nested records, lists and maps of plain values) as its message, field for field."""
    if not is_dataclass(report) or isinstance(report, type):
        raise TypeError(f"{type(report).__name__} is not a record")
    return ParseDict(asdict(report), message_type())


def artifact_proto(artifact: ArtifactRecord) -> ingestion_pb2.Artifact:
    """Its content as the JSON text the message carries."""
    return to_proto(ingestion_pb2.Artifact, artifact, content_json=json.dumps(artifact.content, ensure_ascii=False))
