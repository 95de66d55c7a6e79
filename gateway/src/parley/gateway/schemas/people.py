"""People and their credentials: tenants, users, API keys, the tenant's rate limits, who the
caller is (routes/people.py)."""

from dataclasses import asdict
from datetime import datetime
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

from parley.gateway import access, store
from parley.gateway.schemas import Body, Name, Usd, maybe_usd, not_a_boolean
from parley.kit.contracts import MAX_ID_CHARS

RoleName = Annotated[str, StringConstraints(pattern=f"^({'|'.join(access.ROLES)})$")]
ScopeName = Annotated[str, StringConstraints(pattern=f"^({'|'.join(access.SCOPES)})$")]
# A plausible address, not a verified one: it is a label and a unique handle within the tenant.
Email = Annotated[str, StringConstraints(strip_whitespace=True, max_length=320, pattern=r"^[^@\s\x00]+@[^@\s\x00]+$")]
PerMinute = Annotated[int, Field(ge=0, le=1_000_000_000), BeforeValidator(not_a_boolean)] | None


class LimitsOut(BaseModel):
    """Per minute, each per API key and per user; null is the installation's default, 0 none."""

    requests_per_minute: int | None
    chat_requests_per_minute: int | None
    llm_tokens_per_minute: int | None


class TenantOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    created_at: datetime
    limits: LimitsOut

    @classmethod
    def of(cls, record: store.TenantRecord) -> "TenantOut":
        return cls(
            id=record.id,
            name=record.name,
            created_at=record.created_at,
            limits=LimitsOut.model_validate(store.limits_of(record), from_attributes=True),
        )


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: str
    name: str
    role: str
    email: str | None
    created_at: datetime


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    user_id: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    revoked_at: datetime | None
    # The key's own monthly budget (402 once the calls made with it this month cost this much)
    # and soft alert; null: none of its own (its user's and the tenant's still hold).
    monthly_limit_usd: float | None
    alert_at_usd: float | None

    @classmethod
    def of(cls, record: store.KeyRecord, **extra: Any) -> Self:
        return cls.model_validate(
            {
                **asdict(record),
                "monthly_limit_usd": maybe_usd(record.monthly_limit_micros),
                "alert_at_usd": maybe_usd(record.alert_at_micros),
                **extra,
            }
        )


class KeyCreated(KeyOut):
    key: str = Field(description="the secret: shown this once, never again")


class TenantIn(Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "acme", "owner_name": "Olga", "owner_email": "olga@acme.example"}]}
    )

    name: Name
    owner_name: Name
    owner_email: Email | None = None


class TenantCreated(BaseModel):
    tenant: TenantOut
    owner: UserOut
    api_key: KeyCreated


class UserIn(Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Ada", "email": "ada@acme.example", "role": "member"}]}
    )

    name: Name
    email: Email | None = None
    role: RoleName = "member"


class RoleIn(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"role": "admin"}]})

    role: RoleName


class KeyIn(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "Ada's laptop", "scopes": ["read", "chat"], "expires_at": "2027-01-01T00:00:00Z"}]
        }
    )

    name: Name
    # Left out: every scope the user's role (and the presenting credential) can hold.
    scopes: Annotated[list[ScopeName], Field(min_length=1, max_length=len(access.SCOPES))] | None = None
    expires_at: Annotated[datetime | None, Field(description="in the future (else 422); null: never")] = None
    # Left out: a key for the caller. An admin may make one for another user of the tenant.
    user_id: Annotated[str, StringConstraints(max_length=MAX_ID_CHARS)] | None = None
    # The key's own monthly budget and soft alert; left out or null: none.
    monthly_limit_usd: Usd | None = None
    alert_at_usd: Usd | None = None


class KeyBudgetIn(Body):
    """What is left out stays as it is; null removes it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"monthly_limit_usd": 10.0, "alert_at_usd": 8.0}]})

    monthly_limit_usd: Usd | None = None
    alert_at_usd: Usd | None = None


class LimitsIn(Body):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"requests_per_minute": None, "chat_requests_per_minute": 20, "llm_tokens_per_minute": 100000}]
        }
    )

    requests_per_minute: PerMinute
    chat_requests_per_minute: PerMinute
    llm_tokens_per_minute: PerMinute


class MeOut(BaseModel):
    tenant_id: str
    user: UserOut
    scopes: list[str]
    api_key_id: str | None
    installation_owner: bool
