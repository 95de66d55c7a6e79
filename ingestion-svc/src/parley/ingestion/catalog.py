"""Collections: a tenant's named groups of documents."""

from collections.abc import Callable
from dataclasses import dataclass

from parley.ingestion import store
from parley.ingestion.ids import new_id
from parley.ingestion.models import outbox
from parley.ingestion.store import CollectionRecord
from parley.kit.contracts import CHUNKS_DELETED, MAX_DESCRIPTION_CHARS, MAX_NAME_CHARS, collection_deleted_msg_id
from parley.kit.db import Sessions
from parley.kit.errors import Conflict, InvalidInput, NotFound
from parley.kit.ids import parse_id
from parley.kit.outbox import enqueue
from parley.kit.paging import Cursor, decode_token, encode_token, page_size
from parley.v1 import events_pb2


@dataclass(frozen=True, slots=True)
class Page:
    collections: list[CollectionRecord]
    next_page_token: str


def refuse_nul(value: str, *, field: str) -> str:
    """PostgreSQL text cannot hold NUL: refuse it as bad input rather than fail on insert."""
    if "\x00" in value:
        raise InvalidInput(f"{field} must not contain NUL characters")
    return value


def check_name(name: str) -> str:
    name = refuse_nul(name, field="name").strip()
    if not name:
        raise InvalidInput("name must not be empty")
    if len(name) > MAX_NAME_CHARS:
        raise InvalidInput(f"name is longer than {MAX_NAME_CHARS} characters")
    return name


def check_description(description: str) -> str:
    description = refuse_nul(description, field="description").strip()
    if len(description) > MAX_DESCRIPTION_CHARS:
        raise InvalidInput(f"description is longer than {MAX_DESCRIPTION_CHARS} characters")
    return description


class Collections:
    def __init__(self, *, sessions: Sessions, notify_outbox: Callable[[], None]) -> None:
        self._sessions = sessions
        self._notify_outbox = notify_outbox

    async def create(self, *, tenant_id: str, name: str, description: str) -> CollectionRecord:
        name = check_name(name)
        description = check_description(description)
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            created = await store.insert_collection(
                session=session, tenant_id=tenant_id, collection_id=new_id(), name=name, description=description
            )
        if created is None:
            raise Conflict(f"a collection named {name!r} already exists")
        return created

    async def get(self, *, tenant_id: str, collection_id: str) -> CollectionRecord:
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            found = await store.get_collection(
                session=session, tenant_id=tenant_id, collection_id=parse_id(collection_id, kind="collection")
            )
        if found is None:
            raise NotFound(f"collection {collection_id!r} not found")
        return found

    async def list(self, *, tenant_id: str, size: int, page_token: str) -> Page:
        limit = page_size(size)
        after = decode_token(page_token)
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            rows = await store.list_collections(session=session, tenant_id=tenant_id, limit=limit + 1, after=after)
        page, more = rows[:limit], len(rows) > limit
        token = encode_token(Cursor(at=page[-1].created_at, id=page[-1].id)) if more else ""
        return Page(collections=page, next_page_token=token)

    async def delete(self, *, tenant_id: str, collection_id: str) -> None:
        collection_uuid = parse_id(collection_id, kind="collection")
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            if not await store.delete_collection(session=session, tenant_id=tenant_id, collection_id=collection_uuid):
                raise NotFound(f"collection {collection_id!r} not found")
            await enqueue(
                session=session,
                table=outbox,
                subject=CHUNKS_DELETED,
                msg_id=collection_deleted_msg_id(collection_uuid),
                message=events_pb2.ChunksDeleted(tenant_id=tenant_id, collection_id=str(collection_uuid)),
            )
        self._notify_outbox()
