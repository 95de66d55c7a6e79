"""Parley over the Model Context Protocol at `/mcp` (streamable HTTP, the official `mcp` SDK), so
Claude Desktop, IDEs and agents can use it: the writers' room tools that chat-svc owns
(`ListTools`/`RunTool`: defined once there, run there), plus `search` and `ask`.

Authentication and tenancy are the front door's, as for `/v1`: the API key in `Authorization:
Bearer` (or `x-api-key`) is checked, rate-limited and turned into the caller's principal before
the MCP app sees the request, and every tool runs as that principal over collections that must be
the caller's (another tenant's is "not found"). Every tool takes `collection_ids`.

The SDK's server runs stateless with JSON responses: each POST carries one JSON-RPC request and
its answer, so any gateway replica can serve any call and nothing is kept between them. Its
session manager's task group is started on the first request (the gateway's ASGI app has no
lifespan of its own to start it in). DNS-rebinding protection (a Host allow-list meant for
servers that trust localhost) is off: nothing here is reachable without an API key.
"""

import asyncio
import json
from typing import Any

import grpc
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from parley.gateway import access
from parley.gateway.api.deps import Services
from parley.gateway.chat_turns import collect, start_turn
from parley.gateway.errors import ApiError
from parley.gateway.front_door import principal_of
from parley.gateway.schemas.chat import ChatIn
from parley.gateway.schemas.search import SearchIn, SearchOut
from parley.gateway.store import Principal

PATH = "/mcp"
_COLLECTIONS = {
    "type": "array",
    "items": {"type": "string"},
    "minItems": 1,
    "description": "ids of the collections whose documents to use (GET /v1/collections lists them)",
}
_OWN_TOOLS = (
    types.Tool(
        name="search",
        description="Search the collections' documents: the best passages for a query, each with where it is.",
        input_schema={
            "type": "object",
            "properties": {
                "collection_ids": _COLLECTIONS,
                "query": {"type": "string"},
                "k": {"type": "integer", "minimum": 1, "maximum": 50},
            },
            "required": ["collection_ids", "query"],
        },
    ),
    types.Tool(
        name="ask",
        description="Ask Parley a question about the collections' documents: an answer citing its passages "
        "(a chat turn, billed to the caller's budget).",
        input_schema={
            "type": "object",
            "properties": {"collection_ids": _COLLECTIONS, "question": {"type": "string"}},
            "required": ["collection_ids", "question"],
        },
    ),
)


def _text(text: str, *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=text)], is_error=error)


class McpEndpoint:
    """The ASGI endpoint at PATH."""

    def __init__(self, services: Services) -> None:
        self._services = services
        self._server: Server[Any] = Server("parley", on_list_tools=self._list_tools, on_call_tool=self._call_tool)
        self._app = self._server.streamable_http_app(
            streamable_http_path=PATH,
            stateless_http=True,
            json_response=True,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        )
        self._running: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._start()
        await self._app(scope, receive, send)

    async def _start(self) -> None:
        if self._running is None:
            self._running = asyncio.create_task(self._hold(), name="mcp-sessions")
        await self._ready.wait()

    async def _hold(self) -> None:
        async with self._server.session_manager.run():
            self._ready.set()
            await asyncio.Event().wait()  # until the process stops

    def _who(self, ctx: Any) -> Principal:
        request = getattr(ctx, "request", None)
        who = principal_of(request.scope) if request is not None else None
        if who is None:  # the front door lets no unauthenticated request through to here
            raise PermissionError("not authenticated")
        return who

    async def _list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        who = self._who(ctx)
        listed = await self._services.chat.list_tools(who)
        tools = [
            types.Tool(
                name=spec.name, description=spec.description, input_schema=_with_collections(spec.parameters_json)
            )
            for spec in listed.tools
        ]
        return types.ListToolsResult(tools=[*tools, *_OWN_TOOLS])

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        who = self._who(ctx)
        arguments = dict(params.arguments or {})
        collection_ids = arguments.pop("collection_ids", None)
        if not isinstance(collection_ids, list) or not collection_ids:
            return _text("collection_ids is required: a list of collection ids", error=True)
        try:
            if params.name == "search":
                if not who.may(access.READ):
                    return _text("this key may not read", error=True)
                body = SearchIn(
                    collection_ids=collection_ids, query=str(arguments.get("query", "")), k=arguments.get("k", 10)
                )
                # The query is embedded (billed): budgets before any backend is called.
                await self._services.budgets.before_spending(self._services, who, embeds_query=True)
                await asyncio.gather(
                    *(self._services.ingestion.get_collection(who, cid) for cid in body.collection_ids)
                )
                found = SearchOut.of(await self._services.retrieval.search(who, body.proto()))
                return _text(json.dumps(found.model_dump(mode="json")["data"], ensure_ascii=False))
            if params.name == "ask":
                if not who.may(access.SPEND):
                    return _text("asking is billed: this key needs the chat scope and a member's role", error=True)
                asked = ChatIn(message=str(arguments.get("question", "")), collection_ids=collection_ids)
                answer = await collect(self._services, await start_turn(self._services, who, asked), who)
                message = answer.get("message", {})
                return _text(str(message.get("content", "")) if isinstance(message, dict) else json.dumps(answer))
            if not who.may(access.READ):
                return _text("this key may not read", error=True)
            ran = await self._services.chat.run_tool(
                who, collection_ids=[str(cid) for cid in collection_ids], name=params.name, arguments=arguments
            )
            return _text(ran.result, error=ran.is_error)
        except ValidationError as invalid:
            return _text(f"invalid arguments: {invalid.errors(include_url=False)}", error=True)
        except ApiError as error:
            return _text(error.message, error=True)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                return _text(error.details() or "not found", error=True)
            raise


def _with_collections(parameters_json: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads(parameters_json)
    schema.setdefault("properties", {})["collection_ids"] = _COLLECTIONS
    schema["required"] = ["collection_ids", *schema.get("required", [])]
    return schema
