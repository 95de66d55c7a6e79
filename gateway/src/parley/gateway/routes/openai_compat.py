"""OpenAI's API, spoken by Parley: `POST /v1/chat/completions`, `GET /v1/models`,
`POST /v1/embeddings`, so Open WebUI, LibreChat, IDE plugins and the `openai` SDK work unchanged.

A chat completion is a Parley chat turn (retrieval, budget hold, metering as `POST /v1/chat`);
a model names the collections to ask (`openai_compat.parse_model`). Bodies are parsed here
rather than by FastAPI so that a bad one is OpenAI's 400 `invalid_request_error`, not a 422.
"""

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from parley.gateway import openai_compat
from parley.gateway.api.deps import Chatter, Deps, Ingestion, Reader, Spender
from parley.gateway.errors import ApiError
from parley.gateway.openai_compat import Asked, Ending
from parley.gateway.schemas.openai import ChatCompletionIn, EmbeddingsIn, ModelOut, ModelsOut
from parley.gateway.store import Principal
from parley.kit.identity import current_request_id
from parley.kit.paging import MAX_PAGE_SIZE
from parley.v1 import common_pb2, retrieval_pb2

router = APIRouter(tags=["openai"])

Body = TypeVar("Body", bound=BaseModel)

# Streamed chunks are built from bytes around each JSON-encoded text: a delta is on the path
# between the provider's token and the client's, so it pays one json.dumps of its text only.
_DONE = b"data: [DONE]\n\n"


def _body(model: type[BaseModel]) -> dict[str, Any]:
    """The document's request body for a route that parses its own (its schema is among the
    document's components: `request_bodies`)."""
    schema = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def request_bodies() -> dict[str, Any]:
    """The JSON Schemas of the bodies these routes parse themselves, for the document's components:
    what the routes accept, as the pydantic models that parse them say."""
    _, schemas = models_json_schema(
        [(ChatCompletionIn, "validation"), (EmbeddingsIn, "validation")], ref_template="#/components/schemas/{model}"
    )
    defs: dict[str, Any] = schemas["$defs"]
    return defs


async def parsed(request: Request, model: type[Body]) -> Body:
    try:
        raw = json.loads(await request.body())
    except ValueError:
        raise ApiError(400, "invalid_request", "the body is not JSON") from None
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise ApiError(400, "invalid_request", f"{field}: {first['msg']}") from None


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses={200: {"content": {"text/event-stream": {}}}},
    openapi_extra=_body(ChatCompletionIn),
)
async def chat_completions(request: Request, who: Chatter, services: Deps) -> StreamingResponse | JSONResponse:
    """OpenAI's Chat Completions as a Parley chat turn: `model` is `parley/<collection>` (see
    `GET /v1/models`); the answer's citations are `message.citations` (the final chunk's
    `delta.citations` when streamed) and `[n]` in its text. Body: OpenAI's request, plus
    `conversation_id` to continue a conversation.

    Refused (400) beyond what the body's schema says: a last message that is not the user's
    (`the last message must be the user's question`), a question that is blank (`the question is
    empty`) or over 8,000 characters, a provider or model this deployment does not serve
    (`unknown provider`, `unknown model`)."""
    body = await parsed(request, ChatCompletionIn)
    asked = await openai_compat.start(services, who, body)
    headers = {"X-Conversation-Id": asked.turn.conversation_id, "X-Turn-Id": asked.turn.turn_id}
    if body.stream:
        return StreamingResponse(
            _chunks(services, who, asked, include_usage=body.include_usage()),
            media_type="text/event-stream",
            headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return JSONResponse(await _whole(services, who, asked), headers=headers)


def _parley_fields(asked: Asked) -> dict[str, str]:
    return {"conversation_id": asked.turn.conversation_id, "turn_id": asked.turn.turn_id}


async def _whole(services: Deps, who: Principal, asked: Asked) -> dict[str, Any]:
    text: list[str] = []
    async for piece in openai_compat.answer(services, who, asked):
        if isinstance(piece, str):
            text.append(piece)
            continue
        if piece.error is not None:
            code, message = piece.error
            raise ApiError(504 if code == "timeout" else 502, code, message)
        return {
            "id": asked.completion_id,
            "object": "chat.completion",
            "created": asked.created,
            "model": asked.model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": "".join(text),
                        "refusal": None,
                        "citations": [citation.model_dump() for citation in piece.citations],
                    },
                    "logprobs": None,
                    "finish_reason": piece.finish_reason,
                }
            ],
            "usage": _usage(piece),
            **_parley_fields(asked),
        }
    raise ApiError(502, "turn_failed", "the turn ended without an answer")  # answer() always ends


def _usage(ending: Ending) -> dict[str, Any]:
    if ending.usage is None:
        zero = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        return {**zero, "prompt_tokens_details": {"cached_tokens": 0}, "cost_usd": None, "cache_write_tokens": 0}
    return ending.usage.model_dump()


async def _chunks(services: Deps, who: Principal, asked: Asked, *, include_usage: bool) -> AsyncIterator[bytes]:
    base = {
        "id": asked.completion_id,
        "object": "chat.completion.chunk",
        "created": asked.created,
        "model": asked.model,
    }
    head = json.dumps(base)[:-1].encode()  # `{"id": …, "model": …` without its closing brace
    before_text = head + b', "choices": [{"index": 0, "delta": {"content": '
    after_text = b'}, "finish_reason": null}]}\n\n'
    opening = {"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
    yield _frame({**base, "choices": [opening]})
    async for piece in openai_compat.answer(services, who, asked):
        if isinstance(piece, str):
            yield b"data: " + before_text + json.dumps(piece).encode() + after_text
            continue
        if piece.error is not None:
            code, message = piece.error
            # OpenAI's way to fail a stream already begun: a data line holding `error`.
            error = {"code": code, "message": message, "type": "api_error", "param": None}
            yield _frame({"error": {**error, "request_id": current_request_id()}})
            return
        citations = [citation.model_dump() for citation in piece.citations]
        final = {
            **base,
            "choices": [{"index": 0, "delta": {"citations": citations}, "finish_reason": piece.finish_reason}],
            **_parley_fields(asked),
        }
        if include_usage:
            final["usage"] = None  # as OpenAI does: every chunk but the last has `usage: null`
        yield _frame(final)
        if include_usage:
            yield _frame({**base, "choices": [], "usage": _usage(piece)})
        yield _DONE
        return


def _frame(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


@router.get("/v1/models")
async def list_models(who: Reader, ingestion: Ingestion) -> ModelsOut:
    """One model per collection of the caller's tenant: `parley/<collection name>` asks that
    collection with the deployment's default model (what Open WebUI lists on start)."""
    models: list[ModelOut] = []
    token = ""
    for _ in range(openai_compat.LIST_PAGES):
        page = await ingestion.list_collections(who, common_pb2.PageRequest(page_size=MAX_PAGE_SIZE, page_token=token))
        models.extend(_model(collection) for collection in page.collections)
        token = page.next_page_token
        if not token:
            break
    return ModelsOut(data=models)


@router.get("/v1/models/{model:path}")
async def get_model(model: Annotated[str, Path(max_length=1_000)], who: Reader, services: Deps) -> ModelOut:
    target = openai_compat.parse_model(model)
    ids = await openai_compat.collection_ids(services, who, target.collections, model)
    if len(ids) != 1:
        raise ApiError(404, "model_not_found", f"the model `{model}` does not exist")
    out = _model(await services.ingestion.get_collection(who, ids[0]))
    return out.model_copy(update={"id": model})


def _model(collection: Any) -> ModelOut:
    return ModelOut(
        id=openai_compat.model_name(collection),
        created=collection.created_at.seconds,
        parley={"collection_id": collection.id, "name": collection.name, "document_count": collection.document_count},
    )


@router.post("/v1/embeddings", openapi_extra=_body(EmbeddingsIn))
async def embeddings(request: Request, who: Spender, services: Deps) -> dict[str, Any]:
    """Texts embedded by a collection's embedder (`model`: `parley/<collection>`), so the vectors
    compare with its passages'; any other model name: the deployment's configured embedder.
    Usage is what Parley metered: the tokens the model was called for (cached texts cost none).
    `dimensions` other than the embedder's is a 400 (`dimensions: this model makes …`)."""
    body = await parsed(request, EmbeddingsIn)
    target = openai_compat.parse_model(body.model)
    await services.budgets.before_spending(services, who, embeds_query=True)  # 402 before any backend
    ids = await openai_compat.collection_ids(services, who, target.collections, body.model)
    # Retrieval would embed for any collection id with the configured model; ingestion says
    # whether each is the caller's (404 otherwise), as for a search.
    await asyncio.gather(*(services.ingestion.get_collection(who, collection_id) for collection_id in ids))
    texts = [body.input] if isinstance(body.input, str) else body.input
    embedded = await services.retrieval.embed(who, retrieval_pb2.EmbedRequest(texts=texts, collection_ids=ids))
    if body.dimensions is not None and body.dimensions != embedded.dimensions:
        raise ApiError(400, "invalid_request", f"dimensions: this model makes {embedded.dimensions}-dimension vectors")
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": _vector(list(vector.values), body.encoding_format)}
            for index, vector in enumerate(embedded.embeddings)
        ],
        "model": body.model,
        "usage": {"prompt_tokens": embedded.input_tokens, "total_tokens": embedded.input_tokens},
        "parley": {"embedder": embedded.model, "dimensions": embedded.dimensions},
    }


def _vector(values: list[float], encoding: str) -> list[float] | str:
    # The openai SDK asks for base64 by default: little-endian float32s, as OpenAI sends them.
    if encoding == "base64":
        return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
    return values
