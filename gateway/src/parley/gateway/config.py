"""Gateway settings, from PARLEY_* environment variables."""

from pydantic import SecretStr

from parley.kit.settings import ServiceSettings


class Settings(ServiceSettings):
    http_port: int = 8080
    ingestion_target: str
    chat_target: str
    usage_target: str
    retrieval_target: str
    # Keys are stored as HMAC-SHA256(pepper, key): a leaked table alone does not let anyone in.
    api_key_pepper: SecretStr
    # The first admin key, created on a fresh install when no key exists yet.
    bootstrap_api_key: SecretStr | None = None
    max_upload_bytes: int = 10 * 1024 * 1024
    # Any body that is not an upload (JSON): read no further than this.
    max_body_bytes: int = 1024 * 1024
    # A turn that sends nothing for this long is reported to its client as timed out.
    turn_idle_seconds: float = 120.0
    # Rate limits per minute, each per API key and per user; a tenant may set its own (0: none).
    rate_requests_per_minute: int = 600
    rate_chat_requests_per_minute: int = 8
    rate_llm_tokens_per_minute: int = 200_000
    # Code exchanges (POST /v1/sso/token, public: each asks the identity provider) per client
    # address a minute; 0 turns the limit off.
    rate_sign_ins_per_minute: int = 20
    # Single sign-on (sso.py): on when an issuer is set. Keys from the JWKS URL, else from the
    # issuer's OIDC discovery document.
    sso_issuer: str = ""
    sso_audience: str = ""
    sso_jwks_url: str = ""
    # Comma-separated; asymmetric only (none and HS* are refused at start).
    sso_algorithms: str = "RS256,ES256"
    sso_tenant_claim: str = "parley_tenant"
    sso_default_tenant: str = ""
    sso_role_claim: str = "parley_role"
    sso_default_role: str = "member"
    sso_leeway_seconds: float = 30.0
    sso_jwks_cache_seconds: float = 300.0
    # The web app's "Sign in with …" (sign_in.py): on when the issuer and a client id are set.
    # The redirect URI to register with the provider is the gateway's public address with path `/`
    # (or `sso_redirect_uri` when set); a client secret only for providers that demand one.
    sso_client_id: str = ""
    sso_client_secret: SecretStr | None = None
    sso_scopes: str = "openid profile email"
    sso_display_name: str = "company SSO"
    sso_redirect_uri: str = ""
