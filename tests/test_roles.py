"""Every route, tried by four roles in each of two tenants, through the whole platform.

Tenant A holds a collection, a document and a member's conversation; tenant B's people try
A's ids. The table says which action each route is (docs/api.md's matrix): a role below it is
403; a role that may is served — except that another tenant's ids are 404, and so is another
user's conversation. Destructive routes are tried by A's people on ids that do not exist (still
checked for role first), and by B's people on A's real ids, which must survive.
"""

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from parley.gateway import access
from parley.gateway.access import Action, Principal
from parley.kit.devstack import Platform
from tests.platforms import eventually

MANUAL = "# Espresso\n\n## Descaling\n\nDescale the boiler every 200 shots with citric acid.\n"


ROLES = ("owner", "admin", "member", "viewer")
# The installation's owner only (none of A's or B's people): a role check does not apply.
INSTALLATION = Action("run the installation", access.Role.owner, "none")
ANYONE = Action("be someone", access.Role.viewer, "read")


@dataclass(frozen=True)
class Person:
    tenant: str
    role: str
    user_id: str
    client: httpx.Client
    key_id: str = ""

    def may(self, action: Action) -> bool:
        principal = Principal(tenant_id="", user_id="", role=self.role)
        return principal.may(action)


@dataclass(frozen=True)
class Tenant:
    people: dict[str, Person]
    collection_id: str = ""
    document_id: str = ""
    conversation_id: str = ""
    turn_id: str = ""
    chunk_id: str = ""


def _client(platform: Platform, key: str) -> httpx.Client:
    return httpx.Client(base_url=platform.gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _tenant(platform: Platform, api: httpx.Client, clients: list[httpx.Client]) -> dict[str, Person]:
    made = api.post("/v1/tenants", json={"name": f"team-{uuid.uuid4().hex[:8]}", "owner_name": "Olga"})
    assert made.status_code == 201, made.text
    owner = _client(platform, made.json()["api_key"]["key"])
    clients.append(owner)
    people = {
        "owner": Person(
            made.json()["tenant"]["id"], "owner", made.json()["owner"]["id"], owner, made.json()["api_key"]["id"]
        )
    }
    for role in ROLES[1:]:
        user = owner.post("/v1/users", json={"name": f"{role} person", "role": role})
        assert user.status_code == 201, user.text
        key = owner.post("/v1/api-keys", json={"name": "laptop", "user_id": user.json()["id"]})
        assert key.status_code == 201, key.text
        client = _client(platform, key.json()["key"])
        clients.append(client)
        people[role] = Person(made.json()["tenant"]["id"], role, user.json()["id"], client, key.json()["id"])
    return people


@pytest.fixture(scope="module")
def tenants(platform: Platform, api: httpx.Client) -> Iterator[tuple[Tenant, Tenant]]:
    clients: list[httpx.Client] = []
    try:
        a_people, b_people = _tenant(platform, api, clients), _tenant(platform, api, clients)
        member = a_people["member"].client
        collection = member.post("/v1/collections", json={"name": "manuals"}).json()
        document = member.post(
            f"/v1/collections/{collection['id']}/documents",
            files={"file": ("espresso.md", MANUAL.encode(), "text/markdown")},
        ).json()

        def ready() -> bool:
            return bool(member.get(f"/v1/documents/{document['id']}").json()["status"] == "ready")

        eventually(ready)
        asked = member.post("/v1/chat", json={"message": "How often to descale?", "collection_ids": [collection["id"]]})
        assert asked.status_code == 200, asked.text
        found = member.post("/v1/search", json={"query": "descale", "collection_ids": [collection["id"]]})
        assert found.status_code == 200 and found.json()["data"], found.text
        a = Tenant(
            a_people,
            collection["id"],
            document["id"],
            asked.json()["conversation_id"],
            asked.json()["turn_id"],
            found.json()["data"][0]["chunk_id"],
        )
        yield a, Tenant(b_people)
    finally:
        for client in clients:
            client.close()


@dataclass(frozen=True)
class Route:
    method: str
    # {c} collection, {d} document, {k} passage, {v} conversation, {t} turn, {u} A's member, {key} A's
    # member's API key, {x} nowhere
    path: str
    action: Action
    body: Any = None
    # A's people use ids that exist nowhere (the route would destroy or change what others test).
    destructive: bool = False
    # The resource is the A member's own (a conversation): other people of A get a 404 too.
    members_own: bool = False
    # The A member's own key: its holder or an admin may act on it; anyone else of A gets a 404.
    members_key: bool = False
    upload: bool = False
    # Names nothing that exists for anyone (a dead letter never parked): allowed is a 404.
    missing: bool = False


ROUTES = [
    Route("GET", "/v1/me", ANYONE),
    # Public (how one gets a credential); no identity provider on this platform: the exchange is 404.
    Route("GET", "/v1/sso/config", ANYONE),
    Route(
        "POST",
        "/v1/sso/token",
        ANYONE,
        body={"code": "c", "code_verifier": "v" * 43, "redirect_uri": "http://127.0.0.1/", "nonce": "n"},
        missing=True,
    ),
    Route("GET", "/v1/tenant", access.READ),
    Route(
        "PUT",
        "/v1/tenant/limits",
        access.MANAGE_PEOPLE,
        body={"requests_per_minute": None, "chat_requests_per_minute": None, "llm_tokens_per_minute": None},
    ),
    Route("GET", "/v1/tenants", INSTALLATION),
    Route("POST", "/v1/tenants", INSTALLATION, body={"name": "never", "owner_name": "x"}),
    Route("POST", "/v1/users", access.MANAGE_PEOPLE, body={"name": "new viewer", "role": "viewer"}),
    Route("GET", "/v1/users", access.MANAGE_PEOPLE),
    Route("GET", "/v1/users/{u}", access.MANAGE_PEOPLE),
    Route("PATCH", "/v1/users/{u}", access.MANAGE_PEOPLE, body={"role": "member"}, destructive=True),
    Route("DELETE", "/v1/users/{u}", access.MANAGE_PEOPLE, destructive=True),
    Route("POST", "/v1/api-keys", ANYONE, body={"name": "another", "scopes": ["read"]}),
    Route("GET", "/v1/api-keys", ANYONE),
    Route("PATCH", "/v1/api-keys/{key}", ANYONE, body={"alert_at_usd": None}, members_key=True),
    Route("POST", "/v1/collections", access.WRITE, body={"name": "{fresh}"}),
    Route("GET", "/v1/collections", access.READ),
    Route("GET", "/v1/collections/{c}", access.READ),
    Route("DELETE", "/v1/collections/{c}", access.DELETE, destructive=True),
    Route("POST", "/v1/collections/{c}/documents", access.WRITE, upload=True),
    Route("GET", "/v1/collections/{c}/documents", access.READ),
    Route("GET", "/v1/documents/{d}", access.READ),
    Route("PUT", "/v1/documents/{d}", access.WRITE, upload=True),
    Route("GET", "/v1/documents/{d}/sections", access.READ),
    Route("GET", "/v1/documents/{d}/characters", access.READ),
    Route("GET", "/v1/documents/{d}/pacing", access.READ),
    Route("GET", "/v1/documents/{d}/artifacts", access.READ),
    Route("GET", "/v1/documents/{d}/passages/{k}", access.READ),
    Route("GET", "/v1/documents/{d}/artifacts?fresh=true", access.SPEND),
    Route("DELETE", "/v1/documents/{d}", access.DELETE, destructive=True),
    Route("POST", "/v1/search", access.READ, body={"query": "descale", "collection_ids": ["{c}"]}),
    Route("POST", "/v1/chat", access.CHAT, body={"message": "How long is a shot?", "collection_ids": ["{c}"]}),
    Route(
        "POST",
        "/v1/chat/completions",
        access.CHAT,
        body={"model": "parley/{c}", "messages": [{"role": "user", "content": "How long is a shot?"}]},
    ),
    Route("GET", "/v1/models", access.READ),
    Route("POST", "/v1/embeddings", access.SPEND, body={"model": "parley/{c}", "input": "descale"}),
    Route("GET", "/v1/conversations", access.READ),
    Route("GET", "/v1/conversations?user_id={u}", access.MANAGE_PEOPLE),
    Route("GET", "/v1/conversations/{v}", access.READ, members_own=True),
    Route("GET", "/v1/conversations/{v}/export", access.READ, members_own=True),
    Route("GET", "/v1/conversations/{v}/turns/{t}/events", access.CHAT, members_own=True),
    Route("POST", "/v1/conversations/{v}/turns/{t}/cancel", access.CHAT, destructive=True),
    Route("DELETE", "/v1/conversations/{v}", access.CHAT, destructive=True),
    Route("GET", "/v1/usage", access.READ),
    Route("GET", "/v1/usage/summary", access.READ),
    Route("GET", "/v1/quota", access.READ),
    Route("GET", "/v1/budget", access.READ),
    Route("PUT", "/v1/budget", access.SET_BUDGET, body={"monthly_limit_usd": None}),
    Route("DELETE", "/v1/budget", access.SET_BUDGET),
    Route("GET", "/v1/budget/alert", access.READ),
    Route("PUT", "/v1/budget/alert", access.SET_BUDGET, body={"alert_at_usd": None}),
    Route("PUT", "/v1/users/{u}/budget", access.SET_BUDGET, body={"monthly_limit_usd": None}, destructive=True),
    Route("GET", "/v1/admin/dead-letters", access.OPERATE),
    Route("POST", "/v1/admin/dead-letters/1/replay", access.OPERATE, missing=True),
]


def _fill(text: str, a: Tenant, *, nowhere: bool) -> str:
    nothing = str(uuid.uuid4())
    return (
        text.replace("{c}", nothing if nowhere else a.collection_id)
        .replace("{d}", nothing if nowhere else a.document_id)
        .replace("{v}", nothing if nowhere else a.conversation_id)
        .replace("{t}", nothing if nowhere else a.turn_id)
        .replace("{k}", nothing if nowhere else a.chunk_id)
        .replace("{u}", nothing if nowhere else a.people["member"].user_id)
        .replace("{key}", nothing if nowhere else a.people["member"].key_id)
        .replace("{fresh}", f"c-{uuid.uuid4().hex[:8]}")
    )


def _call(person: Person, route: Route, a: Tenant, *, nowhere: bool) -> httpx.Response:
    path = _fill(route.path, a, nowhere=nowhere)
    if route.upload:
        files = {"file": ("espresso.md", MANUAL.encode(), "text/markdown")}
        return person.client.request(route.method, path, files=files)
    body = None
    if route.body is not None:
        body = json.loads(_fill(json.dumps(route.body), a, nowhere=nowhere))
    return person.client.request(route.method, path, json=body)


def _refers_to_a(route: Route) -> bool:
    marks = ("{c}", "{d}", "{k}", "{v}", "{t}", "{u}", "{key}")
    return any(mark in route.path or mark in str(route.body) for mark in marks)


def _not_found_for(route: Route, side: str, role: str) -> bool:
    """Another tenant's ids, ids that exist nowhere, and another user's conversation."""
    if route.missing:
        return True
    if _refers_to_a(route) and (side == "B" or route.destructive):
        return True
    if route.members_key:
        return not (role == "member" or Principal(tenant_id="", user_id="", role=role).may(access.SET_BUDGET))
    return route.members_own and role != "member"


@pytest.mark.parametrize("route", ROUTES, ids=lambda route: f"{route.method} {route.path}")
def test_every_route_by_two_tenants_and_four_roles(route: Route, tenants: tuple[Tenant, Tenant]) -> None:
    a, b = tenants
    for side, tenant in (("A", a), ("B", b)):
        for role in ROLES:
            person = tenant.people[role]
            response = _call(person, route, a, nowhere=side == "A" and route.destructive)
            seen = (side, role, response.status_code, response.text[:200])
            assert response.status_code < 500, seen
            assert "request_id" in response.text or response.status_code < 400, seen
            if route.action is INSTALLATION or not person.may(route.action):
                assert response.status_code == 403, seen
            elif _not_found_for(route, side, role):
                assert response.status_code == 404, seen
            else:
                assert response.status_code not in (401, 403, 404), seen


def test_what_b_tried_to_destroy_is_still_there(tenants: tuple[Tenant, Tenant]) -> None:
    a, _ = tenants
    member = a.people["member"].client
    for path in (
        f"/v1/collections/{a.collection_id}",
        f"/v1/documents/{a.document_id}",
        f"/v1/conversations/{a.conversation_id}",
        f"/v1/users/{a.people['member'].user_id}",
    ):
        client = a.people["owner"].client if "/users/" in path else member
        assert client.get(path).status_code == 200, path
