"""All SQL of chat-svc. Every query is scoped to the tenant and the conversation's owner."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, delete, func, insert, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.chat.events import USAGE_SUBJECT
from parley.chat.models import conversations, messages, outbox
from parley.kit import outbox as kit_outbox
from parley.kit.ids import as_uuid
from parley.kit.paging import Cursor
from parley.v1 import events_pb2


@dataclass(frozen=True, slots=True)
class Owner:
    tenant_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class StoredMessage:
    role: str
    content: str
    sources: list[dict[str, Any]]
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


async def create_conversation(*, session: AsyncSession, owner: Owner, title: str, collection_ids: Sequence[str]) -> str:
    conversation_id = str(uuid.uuid4())
    await session.execute(
        insert(conversations).values(
            id=conversation_id,
            tenant_id=owner.tenant_id,
            user_id=owner.user_id,
            title=title,
            collection_ids=list(collection_ids),
        )
    )
    return conversation_id


async def get_conversation(*, session: AsyncSession, owner: Owner, conversation_id: str) -> Row[Any] | None:
    if as_uuid(conversation_id) is None:
        return None
    return (
        await session.execute(
            select(conversations).where(
                conversations.c.id == conversation_id,
                conversations.c.tenant_id == owner.tenant_id,
                conversations.c.user_id == owner.user_id,
            )
        )
    ).first()


async def list_conversations(
    *, session: AsyncSession, owner: Owner, limit: int, after: Cursor | None
) -> Sequence[Row[Any]]:
    query = (
        select(conversations)
        .where(conversations.c.tenant_id == owner.tenant_id, conversations.c.user_id == owner.user_id)
        .order_by(conversations.c.updated_at.desc(), conversations.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        after_id = literal(str(after.id), type_=conversations.c.id.type)
        query = query.where(tuple_(conversations.c.updated_at, conversations.c.id) < tuple_(after.at, after_id))
    return (await session.execute(query)).all()


async def conversation_messages(
    *, session: AsyncSession, tenant_id: str, conversation_id: str, last: int | None = None
) -> list[Row[Any]]:
    query = (
        select(messages)
        .where(messages.c.tenant_id == tenant_id, messages.c.conversation_id == conversation_id)
        .order_by(messages.c.created_at.desc(), messages.c.role.asc())  # user before assistant
    )
    if last is not None:
        query = query.limit(last)
    rows = (await session.execute(query)).all()
    return list(reversed(rows))


async def add_turn(
    *,
    session: AsyncSession,
    owner: Owner,
    conversation_id: str,
    turn_id: str,
    question: StoredMessage,
    answer: StoredMessage,
    usage_event: events_pb2.UsageRecorded,
) -> tuple[str, str]:
    """Both messages, the conversation's new time and the usage event, in the caller's transaction."""
    ids = (str(uuid.uuid4()), str(uuid.uuid4()))
    now = func.clock_timestamp()
    for message_id, message in zip(ids, (question, answer), strict=True):
        await session.execute(
            insert(messages).values(
                id=message_id,
                tenant_id=owner.tenant_id,
                conversation_id=conversation_id,
                turn_id=turn_id,
                role=message.role,
                content=message.content,
                sources=message.sources,
                model=message.model,
                input_tokens=message.input_tokens,
                output_tokens=message.output_tokens,
                cache_read_tokens=message.cache_read_tokens,
                cache_write_tokens=message.cache_write_tokens,
                created_at=now,
            )
        )
    await session.execute(
        update(conversations)
        .where(conversations.c.id == conversation_id, conversations.c.tenant_id == owner.tenant_id)
        .values(updated_at=now)
    )
    await record_usage(session=session, usage_event=usage_event)
    return ids


async def record_usage(*, session: AsyncSession, usage_event: events_pb2.UsageRecorded) -> None:
    await kit_outbox.enqueue(
        session=session, table=outbox, subject=USAGE_SUBJECT, msg_id=usage_event.event_id, message=usage_event
    )


async def delete_conversation(*, session: AsyncSession, owner: Owner, conversation_id: str) -> bool:
    if as_uuid(conversation_id) is None:
        return False
    result = await session.execute(
        delete(conversations).where(
            conversations.c.id == conversation_id,
            conversations.c.tenant_id == owner.tenant_id,
            conversations.c.user_id == owner.user_id,
        )
    )
    return bool(result.rowcount)
