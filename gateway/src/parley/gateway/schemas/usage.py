"""Usage, its summary, and budgets (routes/usage.py)."""

from datetime import datetime
from typing import Annotated

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from parley.gateway.schemas import Body, FromProto, Usd


class BudgetIn(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"monthly_limit_usd": 25.0}]})

    # Required, and null says "no limit" in so many words; 0 is a zero budget, not "no limit".
    monthly_limit_usd: Usd | None


class UsageRow(FromProto):
    group: str
    events: int
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    cache_write_1h_tokens: int  # of cache_write_tokens, written to live an hour
    total_tokens: int
    cost_usd: float


class UsageOut(BaseModel):
    since: datetime
    until: datetime
    group_by: str
    rows: list[UsageRow]
    total: UsageRow


class SummaryOut(FromProto):
    window: str
    requests: int
    success_rate: float
    latency_p50_ms: float
    latency_p95_ms: float
    total_tokens: int
    cache_hit_rate: float


# A quota's `limit_micros` is a budget's `monthly_limit_micros`: both are the monthly limit.
# null: no limit.
MonthlyLimitUsd = Annotated[float | None, Field(validation_alias=AliasChoices("monthly_limit_usd", "limit_usd"))]


class QuotaOut(FromProto):
    allowed: bool
    monthly_limit_usd: MonthlyLimitUsd
    spent_usd: float
    reserved_usd: float


# `BudgetOut.of` a `Budget` or a `CheckQuotaResponse`.
class BudgetOut(FromProto):
    monthly_limit_usd: MonthlyLimitUsd


class AlertIn(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"alert_at_usd": 20.0}]})

    # Required; null: no alert.
    alert_at_usd: Usd | None


class AlertOut(BaseModel):
    alert_at_usd: float | None


class UserBudgetIn(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"monthly_limit_usd": 5.0, "alert_at_usd": 4.0}]})

    # Required; null: no limit of the user's own (the tenant's still holds); 0: a zero budget.
    monthly_limit_usd: Usd | None
    alert_at_usd: Usd | None = None


class UserBudgetOut(BaseModel):
    user_id: str
    monthly_limit_usd: float | None
    alert_at_usd: float | None
