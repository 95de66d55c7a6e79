"""Tenants, users and API keys through the gateway's routes, on the real database: a key is shown
once and stored as a keyed hash with a visible prefix; scopes narrow it; expiry and revocation
take effect at once on every replica (two apps over one database); last_used_at is kept."""

import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from parley.gateway import auth, store
from parley.gateway.access import SCOPES
from parley.gateway.models import api_keys
from parley.kit import db

from .conftest import OpenGateway


async def new_owner(sessions: db.Sessions, pepper: str, *, installation: bool = False) -> dict[str, str]:
    """A tenant of its own with an owner holding an every-scope key: the key's headers."""
    key = auth.new_api_key()
    async with sessions.begin() as session:
        tenant = await store.create_tenant(session=session, name=f"t-{uuid.uuid4().hex[:8]}")
        owner = await store.create_user(
            session=session, tenant_id=tenant.id, name="o", role="owner", installation_owner=installation
        )
        await store.create_key(
            session=session,
            tenant_id=tenant.id,
            user_id=owner.id,
            name="k",
            key_hash=auth.hash_api_key(key, pepper=pepper),
            prefix=auth.visible_prefix(key),
            scopes=list(SCOPES),
            expires_at=None,
        )
    return {"Authorization": f"Bearer {key}"}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_a_colleague_gets_a_user_and_a_key_shown_once(
    gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str
) -> None:
    owner = await new_owner(sessions, pepper)
    user = await gateway.post("/v1/users", json={"name": "Ada", "email": "ada@example.com"}, headers=owner)
    assert user.status_code == 201, user.text
    assert user.json()["role"] == "member"
    made = await gateway.post(
        "/v1/api-keys", json={"name": "Ada's laptop", "user_id": user.json()["id"]}, headers=owner
    )
    assert made.status_code == 201, made.text
    secret = made.json()["key"]
    assert secret.startswith("pk_") and made.json()["prefix"] == secret[: auth.PREFIX_CHARS]
    assert made.json()["scopes"] == ["chat", "read", "write"]  # a member's role holds no `admin`
    me = await gateway.get("/v1/me", headers=bearer(secret))
    assert me.json()["user"]["name"] == "Ada" and me.json()["user"]["role"] == "member"
    listed = await gateway.get("/v1/api-keys", headers=owner)
    assert secret not in listed.text and made.json()["prefix"] in listed.text
    async with sessions() as session:
        stored = (await session.execute(select(api_keys.c.key_hash).where(api_keys.c.id == made.json()["id"]))).one()
    assert stored.key_hash == auth.hash_api_key(secret, pepper=pepper) and secret not in stored.key_hash
    # The same email twice in a tenant is a conflict.
    again = await gateway.post("/v1/users", json={"name": "Ada 2", "email": "ada@example.com"}, headers=owner)
    assert again.status_code == 409


async def test_revocation_is_at_once_on_every_replica(
    open_gateway: OpenGateway, sessions: db.Sessions, pepper: str
) -> None:
    owner = await new_owner(sessions, pepper)
    async with open_gateway() as one, open_gateway() as two:
        made = (await one.post("/v1/api-keys", json={"name": "ci"}, headers=owner)).json()
        assert (await two.get("/v1/me", headers=bearer(made["key"]))).status_code == 200
        assert (await one.delete(f"/v1/api-keys/{made['id']}", headers=owner)).status_code == 204
        refused = await two.get("/v1/me", headers=bearer(made["key"]))
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthenticated"
        listed = (await two.get("/v1/api-keys", headers=owner)).json()["data"]
        assert [key["revoked_at"] is not None for key in listed if key["id"] == made["id"]] == [True]


async def test_an_expired_key_is_refused(gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str) -> None:
    owner = await new_owner(sessions, pepper)
    soon = datetime.now(UTC) + timedelta(hours=1)
    made = (
        await gateway.post("/v1/api-keys", json={"name": "t", "expires_at": soon.isoformat()}, headers=owner)
    ).json()
    assert (await gateway.get("/v1/me", headers=bearer(made["key"]))).status_code == 200
    async with sessions.begin() as session:
        await session.execute(
            api_keys.update().where(api_keys.c.id == made["id"]).values(expires_at=datetime.now(UTC) - timedelta(1))
        )
    assert (await gateway.get("/v1/me", headers=bearer(made["key"]))).status_code == 401
    past = await gateway.post("/v1/api-keys", json={"name": "t", "expires_at": "2001-01-01T00:00:00Z"}, headers=owner)
    assert past.status_code == 422


async def test_scopes_narrow_a_key_and_never_widen_it(
    gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str
) -> None:
    owner = await new_owner(sessions, pepper)
    reader = (await gateway.post("/v1/api-keys", json={"name": "r", "scopes": ["read"]}, headers=owner)).json()
    refused = await gateway.put("/v1/budget", json={"monthly_limit_usd": 1}, headers=bearer(reader["key"]))
    assert refused.status_code == 403 and "`admin` scope" in refused.json()["error"]["message"]
    # A read key cannot mint itself a wider one.
    wider = await gateway.post(
        "/v1/api-keys", json={"name": "w", "scopes": ["read", "write"]}, headers=bearer(reader["key"])
    )
    assert wider.status_code == 403


async def test_last_used_at_is_recorded(gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str) -> None:
    owner = await new_owner(sessions, pepper)
    made = (await gateway.post("/v1/api-keys", json={"name": "t"}, headers=owner)).json()
    assert made["last_used_at"] is None
    await gateway.get("/v1/me", headers=bearer(made["key"]))
    listed = (await gateway.get("/v1/api-keys", headers=owner)).json()["data"]
    assert [key["last_used_at"] is not None for key in listed if key["id"] == made["id"]] == [True]


async def test_only_an_owner_makes_owners_and_a_tenant_keeps_one(
    gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str
) -> None:
    owner = await new_owner(sessions, pepper)
    admin_user = (await gateway.post("/v1/users", json={"name": "Al", "role": "admin"}, headers=owner)).json()
    admin = bearer(
        (await gateway.post("/v1/api-keys", json={"name": "a", "user_id": admin_user["id"]}, headers=owner)).json()[
            "key"
        ]
    )
    assert (await gateway.post("/v1/users", json={"name": "O2", "role": "owner"}, headers=admin)).status_code == 403
    me = (await gateway.get("/v1/me", headers=owner)).json()["user"]
    assert (await gateway.delete(f"/v1/users/{me['id']}", headers=admin)).status_code == 403
    demoted = await gateway.patch(f"/v1/users/{me['id']}", json={"role": "admin"}, headers=owner)
    assert demoted.status_code == 409
    # Removing a person removes their keys.
    assert (await gateway.delete(f"/v1/users/{admin_user['id']}", headers=owner)).status_code == 204
    assert (await gateway.get("/v1/me", headers=admin)).status_code == 401


async def test_tenants_are_the_installation_owners(
    gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str
) -> None:
    installer = await new_owner(sessions, pepper, installation=True)
    name = f"team-{uuid.uuid4().hex[:6]}"
    made = await gateway.post("/v1/tenants", json={"name": name, "owner_name": "Bo"}, headers=installer)
    assert made.status_code == 201, made.text
    their_owner = bearer(made.json()["api_key"]["key"])
    assert (await gateway.get("/v1/me", headers=their_owner)).json()["user"]["role"] == "owner"
    assert (await gateway.get("/v1/tenants", headers=their_owner)).status_code == 403
    assert name in (await gateway.get("/v1/tenants", headers=installer)).text
    taken = await gateway.post("/v1/tenants", json={"name": name, "owner_name": "X"}, headers=installer)
    assert taken.status_code == 409
    # Another tenant's user ids are 404, as every other id.
    theirs = (await gateway.get("/v1/me", headers=their_owner)).json()["user"]["id"]
    assert (await gateway.get(f"/v1/users/{theirs}", headers=installer)).status_code == 404
    assert (
        await gateway.post("/v1/api-keys", json={"name": "x", "user_id": theirs}, headers=installer)
    ).status_code == 404


async def _walk(gateway: httpx.AsyncClient, path: str, headers: dict[str, str], page_size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    token = ""
    while True:
        params = {"page_size": page_size} | ({"page_token": token} if token else {})
        page = await gateway.get(path, params=params, headers=headers)
        assert page.status_code == 200, page.text
        pages.append([item["id"] for item in page.json()["data"]])
        token = page.json()["next_page_token"]
        if token is None:
            return pages


async def test_users_and_keys_are_listed_a_page_at_a_time(
    gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str
) -> None:
    owner = await new_owner(sessions, pepper)
    for index in range(4):
        made = await gateway.post("/v1/users", json={"name": f"person {index}"}, headers=owner)
        assert made.status_code == 201, made.text
        body = {"name": f"k{index}", "user_id": made.json()["id"]}
        key = await gateway.post("/v1/api-keys", json=body, headers=owner)
        assert key.status_code == 201, key.text
    for path in ("/v1/users", "/v1/api-keys"):
        everything = [item["id"] for item in (await gateway.get(path, headers=owner)).json()["data"]]
        assert len(everything) == 5  # the owner's and the four made here
        pages = await _walk(gateway, path, owner, page_size=2)
        assert [len(page) for page in pages] == [2, 2, 1], path
        assert [item for page in pages for item in page] == everything, path  # in order, none twice
        assert await _walk(gateway, path, owner, page_size=5) == [everything]
    refused = await gateway.get("/v1/users", params={"page_token": "not-a-token"}, headers=owner)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_argument"
    for size in (0, 101):
        assert (await gateway.get("/v1/api-keys", params={"page_size": size}, headers=owner)).status_code == 422
