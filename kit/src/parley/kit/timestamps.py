"""Datetimes to the protobuf Timestamp every proto carries times in."""

from datetime import UTC, datetime

from google.protobuf.timestamp_pb2 import Timestamp


def as_utc(value: datetime) -> datetime:
    """A naive datetime is taken as UTC, the only zone Parley stores; an aware one is kept."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def to_timestamp(value: datetime) -> Timestamp:
    """A naive datetime is taken as UTC (`as_utc`)."""
    stamp = Timestamp()
    stamp.FromDatetime(as_utc(value))
    return stamp
