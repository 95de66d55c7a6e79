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

class UsageGroupBy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_GROUP_BY_UNSPECIFIED: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_DAY: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_MODEL: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_USER: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_KIND: _ClassVar[UsageGroupBy]
    USAGE_GROUP_BY_API_KEY: _ClassVar[UsageGroupBy]
USAGE_GROUP_BY_UNSPECIFIED: UsageGroupBy
USAGE_GROUP_BY_DAY: UsageGroupBy
USAGE_GROUP_BY_MODEL: UsageGroupBy
USAGE_GROUP_BY_USER: UsageGroupBy
USAGE_GROUP_BY_KIND: UsageGroupBy
USAGE_GROUP_BY_API_KEY: UsageGroupBy

class ReserveRequest(_message.Message):
    __slots__ = ("model", "input_tokens", "max_output_tokens", "idempotency_key", "provider", "fallbacks")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    IDEMPOTENCY_KEY_FIELD_NUMBER: _ClassVar[int]
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    FALLBACKS_FIELD_NUMBER: _ClassVar[int]
    model: str
    input_tokens: int
    max_output_tokens: int
    idempotency_key: str
    provider: str
    fallbacks: _containers.RepeatedCompositeFieldContainer[ModelRoute]
    def __init__(self, model: _Optional[str] = ..., input_tokens: _Optional[int] = ..., max_output_tokens: _Optional[int] = ..., idempotency_key: _Optional[str] = ..., provider: _Optional[str] = ..., fallbacks: _Optional[_Iterable[_Union[ModelRoute, _Mapping]]] = ...) -> None: ...

class ModelRoute(_message.Message):
    __slots__ = ("provider", "model")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("reservation_id", "reserved_micros", "expires_at")
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    reserved_micros: int
    expires_at: _timestamp_pb2.Timestamp
    def __init__(self, reservation_id: _Optional[str] = ..., reserved_micros: _Optional[int] = ..., expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SettleRequest(_message.Message):
    __slots__ = ("reservation_id",)
    RESERVATION_ID_FIELD_NUMBER: _ClassVar[int]
    reservation_id: str
    def __init__(self, reservation_id: _Optional[str] = ...) -> None: ...

class SettleResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckQuotaRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class CheckQuotaResponse(_message.Message):
    __slots__ = ("allowed", "limit_micros", "spent_micros", "reserved_micros")
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    SPENT_MICROS_FIELD_NUMBER: _ClassVar[int]
    RESERVED_MICROS_FIELD_NUMBER: _ClassVar[int]
    allowed: bool
    limit_micros: int
    spent_micros: int
    reserved_micros: int
    def __init__(self, allowed: _Optional[bool] = ..., limit_micros: _Optional[int] = ..., spent_micros: _Optional[int] = ..., reserved_micros: _Optional[int] = ...) -> None: ...

class GetUsageRequest(_message.Message):
    __slots__ = ("since", "until", "group_by")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    group_by: UsageGroupBy
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group_by: _Optional[_Union[UsageGroupBy, str]] = ...) -> None: ...

class UsageRow(_message.Message):
    __slots__ = ("group", "events", "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "total_tokens", "cost_micros", "cache_write_1h_tokens")
    GROUP_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    INPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_READ_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    CACHE_WRITE_1H_TOKENS_FIELD_NUMBER: _ClassVar[int]
    group: str
    events: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    total_tokens: int
    cost_micros: int
    cache_write_1h_tokens: int
    def __init__(self, group: _Optional[str] = ..., events: _Optional[int] = ..., input_tokens: _Optional[int] = ..., output_tokens: _Optional[int] = ..., cache_read_tokens: _Optional[int] = ..., cache_write_tokens: _Optional[int] = ..., total_tokens: _Optional[int] = ..., cost_micros: _Optional[int] = ..., cache_write_1h_tokens: _Optional[int] = ...) -> None: ...

class GetUsageResponse(_message.Message):
    __slots__ = ("rows", "total")
    ROWS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    rows: _containers.RepeatedCompositeFieldContainer[UsageRow]
    total: UsageRow
    def __init__(self, rows: _Optional[_Iterable[_Union[UsageRow, _Mapping]]] = ..., total: _Optional[_Union[UsageRow, _Mapping]] = ...) -> None: ...

class GetSummaryRequest(_message.Message):
    __slots__ = ("window",)
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    window: str
    def __init__(self, window: _Optional[str] = ...) -> None: ...

class GetSummaryResponse(_message.Message):
    __slots__ = ("requests", "success_rate", "latency_p50_ms", "latency_p95_ms", "total_tokens", "cache_hit_rate")
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P50_MS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_P95_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_TOKENS_FIELD_NUMBER: _ClassVar[int]
    CACHE_HIT_RATE_FIELD_NUMBER: _ClassVar[int]
    requests: int
    success_rate: float
    latency_p50_ms: float
    latency_p95_ms: float
    total_tokens: int
    cache_hit_rate: float
    def __init__(self, requests: _Optional[int] = ..., success_rate: _Optional[float] = ..., latency_p50_ms: _Optional[float] = ..., latency_p95_ms: _Optional[float] = ..., total_tokens: _Optional[int] = ..., cache_hit_rate: _Optional[float] = ...) -> None: ...

class SetBudgetRequest(_message.Message):
    __slots__ = ("monthly_limit_micros",)
    MONTHLY_LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    monthly_limit_micros: int
    def __init__(self, monthly_limit_micros: _Optional[int] = ...) -> None: ...

class Budget(_message.Message):
    __slots__ = ("monthly_limit_micros",)
    MONTHLY_LIMIT_MICROS_FIELD_NUMBER: _ClassVar[int]
    monthly_limit_micros: int
    def __init__(self, monthly_limit_micros: _Optional[int] = ...) -> None: ...

class ExportRequest(_message.Message):
    __slots__ = ("since", "until")
    SINCE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    since: _timestamp_pb2.Timestamp
    until: _timestamp_pb2.Timestamp
    def __init__(self, since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., until: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExportChunk(_message.Message):
    __slots__ = ("csv",)
    CSV_FIELD_NUMBER: _ClassVar[int]
    csv: bytes
    def __init__(self, csv: _Optional[bytes] = ...) -> None: ...

class PriceUsageRequest(_message.Message):
    __slots__ = ("provider", "model", "usage")
    PROVIDER_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    USAGE_FIELD_NUMBER: _ClassVar[int]
    provider: str
    model: str
    usage: _common_pb2.TokenUsage
    def __init__(self, provider: _Optional[str] = ..., model: _Optional[str] = ..., usage: _Optional[_Union[_common_pb2.TokenUsage, _Mapping]] = ...) -> None: ...

class PriceUsageResponse(_message.Message):
    __slots__ = ("cost_micros",)
    COST_MICROS_FIELD_NUMBER: _ClassVar[int]
    cost_micros: int
    def __init__(self, cost_micros: _Optional[int] = ...) -> None: ...
