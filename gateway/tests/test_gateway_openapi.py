"""What the OpenAPI document promises, held at the edges schemathesis found: no boolean is money,
no bare number is a time, no out-of-range number reaches a backend (a 500 before), every route
documents the error shape, and an unhandled error is counted in the request metrics."""

import re
import uuid

import httpx
from fastapi import APIRouter
from prometheus_client import REGISTRY

from parley.gateway.app import create_app
from parley.kit import db

from .conftest import OpenGateway
from .test_gateway_people import new_owner


async def test_values_of_the_wrong_kind_or_range_are_422(
    gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str
) -> None:
    owner = await new_owner(sessions, pepper)
    for method, path, kwargs in (
        ("PUT", "/v1/budget", {"json": {"monthly_limit_usd": False}}),
        ("PUT", "/v1/budget", {"json": {"monthly_limit_usd": "5"}}),
        ("GET", "/v1/usage", {"params": {"until": "0.5"}}),
        ("GET", "/v1/usage", {"params": {"since": "1700000000"}}),
        ("POST", "/v1/admin/dead-letters/9223372036854775808/replay", {}),
        (
            "POST",
            "/v1/search",
            {"json": {"query": "q", "collection_ids": ["c1"], "filters": {"page_to": 2147483648}}},
        ),
        (
            "PUT",
            "/v1/tenant/limits",
            {"json": {"requests_per_minute": True, "chat_requests_per_minute": None, "llm_tokens_per_minute": None}},
        ),
    ):
        response = await gateway.request(method, path, headers=owner, **kwargs)
        assert response.status_code == 422, (path, kwargs, response.text)
        assert response.json()["error"]["code"] == "invalid_request"


async def test_every_v1_operation_documents_the_error_shape(gateway: httpx.AsyncClient) -> None:
    spec = (await gateway.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method, operation in operations.items():
            documented = operation["responses"]
            for status in ("401", "403", "404", "413", "422", "429", "503"):
                assert status in documented, (method, path, status)
                assert documented[status]["content"]["application/json"]["schema"] == {
                    "$ref": "#/components/schemas/ErrorBody"
                }
    assert spec["components"]["schemas"]["ChatIn"]["examples"]
    # Bounds are JSON Schema's `minimum`/`maximum`: pydantic's own `ge`/`le` would be ignored by
    # every client and fuzzer (a bound written after a validator leaks out that way).
    assert not _pydantic_keywords(spec), _pydantic_keywords(spec)


async def test_what_the_gateway_refuses_the_document_refuses_too(
    gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str
) -> None:
    """Requests schemathesis found the document allowing and the gateway refusing: a blank name or
    message, an unknown artifact kind or intent, a malformed page token, a chat with nothing to ask.
    Each is refused, and the document now says so (so a request valid by it is not refused)."""
    owner = await new_owner(sessions, pepper)
    spec = (await gateway.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    blank = re.compile(schemas["CollectionIn"]["properties"]["name"]["pattern"])
    for name in ("\n", "   ", "\x1f\t", "a\x00"):
        assert not blank.search(name), repr(name)
        refused = await gateway.post("/v1/collections", json={"name": name}, headers=owner)
        assert refused.status_code == 422, (name, refused.text)
    assert blank.search(" Manuals ")
    assert not re.compile(schemas["ChatIn"]["properties"]["message"]["pattern"]).search(" \n ")
    assert (
        await gateway.post("/v1/chat", json={"message": " ", "collection_ids": ["c"]}, headers=owner)
    ).status_code == 422
    assert schemas["ChatIn"]["properties"]["intent"]["enum"][0] == ""
    assert {"required": ["conversation_id"], "properties": {"conversation_id": {"type": "string"}}} in schemas[
        "ChatIn"
    ]["anyOf"]

    kinds = spec["paths"]["/v1/documents/{document_id}/artifacts"]["get"]["parameters"]
    kind = next(parameter for parameter in kinds if parameter["name"] == "kind")
    assert re.search(kind["schema"]["items"]["pattern"], "outline")
    assert not re.search(kind["schema"]["items"]["pattern"], "poem")

    listed = spec["paths"]["/v1/users"]["get"]["parameters"]
    token = next(parameter for parameter in listed if parameter["name"] == "page_token")
    assert not re.search(token["schema"]["pattern"], "not a token!")
    assert (await gateway.get("/v1/users", params={"page_token": "not a token!"}, headers=owner)).status_code == 422


def _pydantic_keywords(node: object, path: str = "") -> list[str]:
    found: list[str] = []
    if isinstance(node, dict):
        found += [f"{path}/{key}" for key in ("ge", "le", "gt", "lt") if key in node and "type" in node]
        for key, value in node.items():
            found += _pydantic_keywords(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _pydantic_keywords(value, f"{path}/{index}")
    return found


def _count(status: str) -> float:
    value = REGISTRY.get_sample_value(
        "parley_gateway_http_requests_total", {"method": "GET", "route": "/v1/boom", "status": status}
    )
    return value or 0.0


async def test_an_unhandled_error_is_a_500_in_the_error_shape_and_in_the_metrics(
    open_gateway: OpenGateway, sessions: db.Sessions, pepper: str
) -> None:
    owner = await new_owner(sessions, pepper)
    async with open_gateway() as gateway:
        services = gateway._transport.app.state.services  # type: ignore[attr-defined]
    app = create_app(services)
    boom = APIRouter()

    @boom.get("/v1/boom")
    async def explode() -> None:
        raise RuntimeError("a bug")

    app.include_router(boom)
    before = _count("500")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        response = await client.get("/v1/boom", headers=owner)
    assert response.status_code == 500
    assert response.json()["error"] == {
        "code": "internal",
        "message": "internal error",
        "request_id": response.headers["X-Request-ID"],
        "type": "api_error",  # OpenAI's fields, on every error
        "param": None,
    }
    assert _count("500") == before + 1


async def test_the_openai_routes_document_the_bodies_they_parse(
    gateway: httpx.AsyncClient, sessions: db.Sessions, pepper: str
) -> None:
    """The OpenAI routes parse their own bodies (OpenAI's 400, not a 422), and the document
    describes those bodies with what they refuse: each refusal here is one the schema states."""
    owner = await new_owner(sessions, pepper)
    spec = (await gateway.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]
    for path, name in (("/v1/chat/completions", "ChatCompletionIn"), ("/v1/embeddings", "EmbeddingsIn")):
        body = spec["paths"][path]["post"]["requestBody"]
        assert body["content"]["application/json"]["schema"] == {"$ref": f"#/components/schemas/{name}"}
        assert schemas[name]["examples"]
    chat = schemas["ChatCompletionIn"]
    collection = str(uuid.uuid4())
    ask = {"model": f"parley/{collection}", "messages": [{"role": "user", "content": "descale?"}]}

    async def refused(path: str, body: dict[str, object]) -> str:
        answer = await gateway.post(path, json=body, headers=owner)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]["type"] == "invalid_request_error"
        return str(answer.json()["error"]["message"])

    # Stop sequences: at most 4.
    stop = next(option for option in chat["properties"]["stop"]["anyOf"] if option.get("type") == "array")
    assert stop["maxItems"] == 4
    await refused("/v1/chat/completions", {**ask, "stop": ["a", "b", "c", "d", "e"]})
    # n: only 1.
    n = chat["properties"]["n"]
    assert (n["minimum"], n["maximum"]) == (1, 1)
    await refused("/v1/chat/completions", {**ask, "n": 2})
    # A model naming more collections than a question may ask.
    too_many = re.compile(chat["properties"]["model"]["not"]["pattern"])
    many = "parley/" + "+".join(str(uuid.uuid4()) for _ in range(21))
    assert too_many.search(many) and not too_many.search("parley/" + "+".join(["a"] * 20) + "@anthropic/x")
    assert "at most 20 collections" in await refused("/v1/chat/completions", {**ask, "model": many})
    # Nothing to ask: neither collections nor a conversation.
    assert {"required": ["conversation_id"], "properties": {"conversation_id": {"type": "string"}}} in chat["anyOf"]
    assert "name the collections" in await refused("/v1/chat/completions", {**ask, "model": "parley"})
    # Metadata's ids are ids.
    meta = chat["properties"]["metadata"]["properties"]
    assert not re.search(meta["conversation_id"]["pattern"], "a b") and re.search(
        meta["collection_ids"]["pattern"], "a, b"
    )
    assert "conversation_id" in await refused("/v1/chat/completions", {**ask, "metadata": {"conversation_id": "a b"}})
    # Text parts only.
    assert schemas["TextPart"]["properties"]["type"]["enum"] == ["text"]
    image = {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}
    assert "only text" in await refused("/v1/chat/completions", {**ask, "messages": [image]})
    roles = schemas["ChatMessageIn"]["properties"]["role"]["enum"]
    assert "user" in roles and "robot" not in roles
    await refused("/v1/chat/completions", {**ask, "messages": [{"role": "robot", "content": "hi"}]})

    embeddings = schemas["EmbeddingsIn"]["properties"]
    assert embeddings["encoding_format"]["enum"] == ["float", "base64"]
    dimensions = next(option for option in embeddings["dimensions"]["anyOf"] if option.get("type") == "integer")
    assert dimensions["minimum"] == 1
    embed = {"model": f"parley/{collection}", "input": "descale"}
    await refused("/v1/embeddings", {**embed, "dimensions": 0})
    await refused("/v1/embeddings", {**embed, "encoding_format": "hex"})
