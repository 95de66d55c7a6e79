"""usage-svc settings, from PARLEY_* environment variables."""

from parley.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    # A hold the gateway never settles (a crashed turn) stops counting against the budget after this.
    reservation_ttl_seconds: int = 15 * 60
    export_rows_per_chunk: int = 500
