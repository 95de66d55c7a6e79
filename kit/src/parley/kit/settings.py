"""Settings every service reads from `PARLEY_*` environment variables, once, at start."""

from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from parley.kit.identity import Signer

# Values people leave in example files; a service outside dev refuses to run with them.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "placeholder", "secret", "password", "xxx", "todo", "dev"}
)


class ServiceSettings(BaseSettings):
    """The part of every service's settings that the kit consumes.

    Required fields have no default, so a service with a missing one fails at start with
    pydantic's message naming the variable.
    """

    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore")

    env: Literal["dev", "test", "prod"] = "prod"
    database_url: str
    nats_url: str
    # Where the service listens (gRPC, metrics, the gateway's HTTP). `make run` keeps it on loopback.
    listen_host: str = "0.0.0.0"
    grpc_port: int = 50051
    metrics_port: int = 0  # 0: no separate metrics listener
    log_level: str = "INFO"
    db_pool_size: int = 5
    shutdown_grace_seconds: float = 10.0
    call_deadline_seconds: float = 10.0
    # Signs the identity every gRPC call carries (kit.identity): the same in every service.
    internal_secret: SecretStr

    def signer(self) -> Signer:
        return Signer(self.internal_secret.get_secret_value())

    @model_validator(mode="after")
    def _refuse_placeholder_secrets(self) -> "ServiceSettings":
        if self.env == "dev":
            return self
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and is_placeholder(value.get_secret_value()):
                raise ValueError(
                    f"PARLEY_{name.upper()} is missing or a placeholder; "
                    "set a real secret (placeholders are accepted only with PARLEY_ENV=dev)"
                )
        return self


def is_placeholder(secret: str) -> bool:
    return secret.strip().lower() in PLACEHOLDER_SECRETS
