"""All SQL of chat-svc, returning typed records. Every query is scoped to the tenant and the
conversation's owner, in a transaction that `enter_tenant` has given to that tenant (row-level
security, migration 0010); the few that cross tenants say so and run as the login role.

Sources and an answer's ContextUsed are stored as JSONB in their proto's JSON form and
TokenUsage as one column per field (named as in the proto), each converted by one helper here.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from google.protobuf.json_format import MessageToDict, ParseDict
from sqlalchemy import RowMapping, case, delete, exists, func, insert, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.chat.models import conversations, messages, outbox, turns
from parley.kit import db
from parley.kit import outbox as kit_outbox
from parley.kit.contracts import SUMMARIZE_JOBS, USAGE_RECORDED
from parley.kit.errors import InvalidInput
from parley.kit.ids import as_uuid
from parley.kit.paging import Cursor
from parley.v1 import chat_pb2, common_pb2, events_pb2

USAGE_COLUMNS = tuple(descriptor.name for descriptor in common_pb2.TokenUsage.DESCRIPTOR.fields)

# The role of migration 0010's policies: no login, no BYPASSRLS, not the tables' owner.
TENANT_ROLE = "parley_chat_tenant"


async def enter_tenant(*, session: AsyncSession, tenant_id: str) -> None:
    """Give the rest of this transaction to one tenant: PostgreSQL then hides every other tenant's
    conversations, messages and turns, whatever a query's WHERE says. First thing in every
    transaction on tenant data; the outbox relay, the lease sweep's look for lapsed turns, the
    renewal of leases and migrations run as the login role."""
    await db.enter_tenant(session, role=TENANT_ROLE, tenant_id=tenant_id)


@dataclass(frozen=True, slots=True)
class Owner:
    tenant_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class ConversationRecord:
    id: str
    title: str
    collection_ids: tuple[str, ...]
    created_at: datetime
    updated_at: datetime
    summary: str  # of the first `summarized_messages` messages
    summarized_messages: int


@dataclass(frozen=True, slots=True)
class MessageRecord:
    id: str
    turn_id: str
    role: str  # user | assistant
    content: str
    sources: tuple[chat_pb2.Source, ...]
    model: str
    usage: common_pb2.TokenUsage
    incomplete: bool  # the provider broke the answer off after it began
    context_used: chat_pb2.ContextUsed | None  # an answer's: how its prompt was built
    cost_micros: int | None  # an answer's, as usage-svc priced it; None: not known
    created_at: datetime
    # A question's text as the model read it (with the passages and open section sent with it),
    # sent again byte for byte by later turns; "" when that was the content alone.
    sent_text: str = ""
    sent_passages: tuple[tuple[str, int], ...] = ()  # the passages sent with it: (chunk id, number)

    @property
    def as_sent(self) -> str:
        return self.sent_text or self.content


@dataclass(frozen=True, slots=True)
class TurnRecord:
    id: str
    conversation_id: str
    state: str  # running | completed | failed | cancelled
    created_at: datetime


@dataclass(frozen=True, slots=True)
class LapsedTurn:
    """A running turn whose lease ran out: its replica died. What settling it needs."""

    id: str
    tenant_id: str
    user_id: str
    conversation_id: str
    reservation_id: str
    provider: str
    model: str
    reported: "ReportedUsage | None"  # what the provider reported before the replica died, if it did


@dataclass(frozen=True, slots=True)
class ReportedUsage:
    provider: str
    model: str
    usage: common_pb2.TokenUsage


@dataclass(frozen=True, slots=True)
class NewMessage:
    role: str
    content: str
    sources: Sequence[chat_pb2.Source] = ()
    model: str = ""
    usage: common_pb2.TokenUsage = field(default_factory=common_pb2.TokenUsage)
    incomplete: bool = False
    context_used: chat_pb2.ContextUsed | None = None
    cost_micros: int | None = None
    sent_text: str = ""
    sent_passages: Sequence[tuple[str, int]] = ()


def _conversation(row: RowMapping) -> ConversationRecord:
    return ConversationRecord(
        id=row["id"],
        title=row["title"],
        collection_ids=tuple(row["collection_ids"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        summary=row["summary"],
        summarized_messages=row["summarized_messages"],
    )


def _message(row: RowMapping) -> MessageRecord:
    return MessageRecord(
        id=row["id"],
        turn_id=row["turn_id"],
        role=row["role"],
        content=row["content"],
        sources=tuple(ParseDict(source, chat_pb2.Source(), ignore_unknown_fields=True) for source in row["sources"]),
        model=row["model"],
        usage=common_pb2.TokenUsage(**{name: row[name] for name in USAGE_COLUMNS}),
        incomplete=row["incomplete"],
        context_used=None
        if row["context_used"] is None
        else ParseDict(row["context_used"], chat_pb2.ContextUsed(), ignore_unknown_fields=True),
        cost_micros=row["cost_micros"],
        created_at=row["created_at"],
        sent_text=row["sent_text"],
        sent_passages=tuple((held["chunk_id"], held["index"]) for held in row["sent_passages"]),
    )


def _turn(row: RowMapping) -> TurnRecord:
    return TurnRecord(
        id=row["id"], conversation_id=row["conversation_id"], state=row["state"], created_at=row["created_at"]
    )


def _message_values(message: NewMessage) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": message.content,
        "sources": [MessageToDict(source, preserving_proto_field_name=True) for source in message.sources],
        "model": message.model,
        "incomplete": message.incomplete,
        "context_used": None
        if message.context_used is None
        else MessageToDict(message.context_used, preserving_proto_field_name=True),
        "cost_micros": message.cost_micros,
        "sent_text": message.sent_text,
        "sent_passages": [{"chunk_id": chunk_id, "index": index} for chunk_id, index in message.sent_passages],
        **{name: getattr(message.usage, name) for name in USAGE_COLUMNS},
    }


async def create_conversation(
    *, session: AsyncSession, owner: Owner, title: str, collection_ids: Sequence[str]
) -> ConversationRecord:
    row = (
        (
            await session.execute(
                insert(conversations)
                .values(
                    id=str(uuid.uuid4()),
                    tenant_id=owner.tenant_id,
                    user_id=owner.user_id,
                    title=title,
                    collection_ids=list(collection_ids),
                )
                .returning(conversations)
            )
        )
        .mappings()
        .one()
    )
    return _conversation(row)


async def get_conversation(*, session: AsyncSession, owner: Owner, conversation_id: str) -> ConversationRecord | None:
    if as_uuid(conversation_id) is None:
        return None
    row = (
        (
            await session.execute(
                select(conversations).where(
                    conversations.c.id == conversation_id,
                    conversations.c.tenant_id == owner.tenant_id,
                    conversations.c.user_id == owner.user_id,
                )
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _conversation(row)


async def list_conversations(
    *, session: AsyncSession, owner: Owner, limit: int, after: Cursor | None
) -> list[ConversationRecord]:
    query = (
        select(conversations)
        .where(conversations.c.tenant_id == owner.tenant_id, conversations.c.user_id == owner.user_id)
        .order_by(conversations.c.updated_at.desc(), conversations.c.id.desc())
        .limit(limit)
    )
    if after is not None:
        after_id = literal(str(after.id), type_=conversations.c.id.type)
        query = query.where(tuple_(conversations.c.updated_at, conversations.c.id) < tuple_(after.at, after_id))
    return [_conversation(row) for row in (await session.execute(query)).mappings()]


# A turn's two messages share their transaction's timestamp: the user's is the earlier all the same.
_LATER_ROLE = case((messages.c.role == "assistant", 1), else_=0)


async def conversation_messages(
    *,
    session: AsyncSession,
    tenant_id: str,
    conversation_id: str,
    last: int | None = None,
    before: Cursor | None = None,
) -> list[MessageRecord]:
    """The conversation's messages, oldest first: every one, or the `last` ones before the message
    `before` names (a page's oldest: a cursor reading back through the conversation)."""
    newest_first = (messages.c.created_at.desc(), _LATER_ROLE.desc(), messages.c.id.desc())
    query = (
        select(messages)
        .where(messages.c.tenant_id == tenant_id, messages.c.conversation_id == conversation_id)
        .order_by(*newest_first)
    )
    if before is not None:
        bound = (
            await session.execute(
                select(messages.c.created_at, _LATER_ROLE, messages.c.id).where(
                    messages.c.tenant_id == tenant_id,
                    messages.c.conversation_id == conversation_id,
                    messages.c.id == str(before.id),
                )
            )
        ).one_or_none()
        if bound is None:
            raise InvalidInput("page_token is not one this conversation issued")
        at, later, message_id = bound
        after = tuple_(at, later, literal(message_id, type_=messages.c.id.type))
        query = query.where(tuple_(messages.c.created_at, _LATER_ROLE, messages.c.id) < after)
    if last is not None:
        query = query.limit(last)
    rows = (await session.execute(query)).mappings().all()
    return [_message(row) for row in reversed(rows)]


async def count_messages(*, session: AsyncSession, tenant_id: str, conversation_id: str) -> int:
    query = (
        select(func.count())
        .select_from(messages)
        .where(messages.c.tenant_id == tenant_id, messages.c.conversation_id == conversation_id)
    )
    return int((await session.execute(query)).scalar_one())


async def add_turn(
    *,
    session: AsyncSession,
    owner: Owner,
    conversation_id: str,
    turn_id: str,
    lease: timedelta,
    provider: str = "",
    model: str = "",
) -> TurnRecord:
    row = (
        (
            await session.execute(
                insert(turns)
                .values(
                    id=turn_id,
                    tenant_id=owner.tenant_id,
                    user_id=owner.user_id,
                    conversation_id=conversation_id,
                    state="running",
                    provider=provider,
                    model=model,
                    lease_expires_at=func.now() + lease,
                )
                .returning(turns)
            )
        )
        .mappings()
        .one()
    )
    return _turn(row)


async def get_turn(*, session: AsyncSession, owner: Owner, conversation_id: str, turn_id: str) -> TurnRecord | None:
    """The owner's turn in that conversation; another owner's (or conversation's) turn is None."""
    if as_uuid(conversation_id) is None or as_uuid(turn_id) is None:
        return None
    row = (
        (
            await session.execute(
                select(turns)
                .join(conversations, conversations.c.id == turns.c.conversation_id)
                .where(
                    turns.c.id == turn_id,
                    turns.c.conversation_id == conversation_id,
                    conversations.c.tenant_id == owner.tenant_id,
                    conversations.c.user_id == owner.user_id,
                )
            )
        )
        .mappings()
        .first()
    )
    return None if row is None else _turn(row)


async def set_turn_hold(*, session: AsyncSession, turn_id: str, reservation_id: str) -> bool:
    """The hold a started turn may spend, recorded before its model is called; False when the turn
    is gone meanwhile (its conversation was deleted)."""
    recorded = await session.execute(
        update(turns)
        .where(turns.c.id == turn_id, turns.c.state == "running")
        .values(reservation_id=reservation_id)
        .returning(turns.c.id)
    )
    return recorded.first() is not None


async def discard_turn(*, session: AsyncSession, tenant_id: str, turn_id: str, conversation_id: str | None) -> None:
    """A turn refused at its hold, and the conversation created for it (`conversation_id`), if any."""
    await session.execute(delete(turns).where(turns.c.id == turn_id, turns.c.tenant_id == tenant_id))
    if conversation_id is not None:
        await session.execute(
            delete(conversations).where(conversations.c.id == conversation_id, conversations.c.tenant_id == tenant_id)
        )


async def end_turn(*, session: AsyncSession, tenant_id: str, turn_id: str, state: str) -> bool:
    """End a running turn; False when it is not running any more (another replica settled it as
    interrupted when its lease ran out): the caller's transaction must then record nothing."""
    ended = await session.execute(
        update(turns)
        .where(turns.c.id == turn_id, turns.c.tenant_id == tenant_id, turns.c.state == "running")
        .values(state=state)
        .returning(turns.c.id)
    )
    return ended.first() is not None


async def renew_leases(*, session: AsyncSession, turn_ids: Sequence[str], lease: timedelta) -> None:
    """The running turns of this replica are alive for `lease` more. Across tenants (a replica runs
    any tenant's turns): the login role, outside row-level security; it moves nothing but leases."""
    if turn_ids:
        await session.execute(
            update(turns)
            .where(turns.c.id.in_(list(turn_ids)), turns.c.state == "running")
            .values(lease_expires_at=func.now() + lease)
        )


@dataclass(frozen=True, slots=True)
class LapsedKey:
    tenant_id: str
    turn_id: str


async def lapsed_turn_keys(
    *, session: AsyncSession, spare: Sequence[str], turn_id: str | None = None, limit: int = 100
) -> list[LapsedKey]:
    """Which running turns' leases ran out (or whether `turn_id`'s did), but those in `spare`, and
    their tenants, oldest lapse first. Across tenants: the login role, outside row-level security;
    each is then locked and settled by `lapsed_turns` in a transaction given to its tenant."""
    query = (
        select(turns.c.tenant_id, turns.c.id)
        .where(turns.c.state == "running", turns.c.lease_expires_at < func.now(), turns.c.id.not_in(list(spare)))
        .order_by(turns.c.lease_expires_at)
        .limit(limit)
    )
    if turn_id is not None:
        query = query.where(turns.c.id == turn_id)
    return [LapsedKey(tenant_id=row.tenant_id, turn_id=row.id) for row in (await session.execute(query)).all()]


async def lapsed_turns(
    *, session: AsyncSession, spare: Sequence[str], turn_id: str | None = None, limit: int = 100
) -> list[LapsedTurn]:
    """The running turns whose lease ran out (or just `turn_id`'s), but those in `spare`, locked
    until the transaction ends: the transaction's tenant's (row-level security). Rows another
    replica is settling are skipped, not waited for."""
    query = (
        select(turns)
        .where(turns.c.state == "running", turns.c.lease_expires_at < func.now(), turns.c.id.not_in(list(spare)))
        .order_by(turns.c.lease_expires_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if turn_id is not None:
        query = query.where(turns.c.id == turn_id)
    rows = (await session.execute(query)).mappings().all()
    return [
        LapsedTurn(
            id=row["id"],
            tenant_id=row["tenant_id"],
            user_id=row["user_id"],
            conversation_id=row["conversation_id"],
            reservation_id=row["reservation_id"],
            provider=row["provider"],
            model=row["model"],
            reported=None
            if row["reported_usage"] is None
            else ReportedUsage(
                provider=row["reported_usage"]["provider"],
                model=row["reported_usage"]["model"],
                usage=ParseDict(row["reported_usage"]["usage"], common_pb2.TokenUsage()),
            ),
        )
        for row in rows
    ]


async def end_lapsed_turns(*, session: AsyncSession, lapsed: Sequence[LapsedTurn]) -> None:
    """`interrupted` the lapsed turns whose hold was recorded (they may have called their model),
    `failed` those whose was not (they never did)."""
    for state, held in (("interrupted", True), ("failed", False)):
        ids = [turn.id for turn in lapsed if bool(turn.reservation_id) == held]
        if ids:
            await session.execute(update(turns).where(turns.c.id.in_(ids)).values(state=state))


async def drop_conversations_left_empty(*, session: AsyncSession, conversation_ids: Sequence[str]) -> None:
    """The conversations among these that hold no message and no turn but failed ones: each was
    created for a turn that never began (its hold uncertain), and the caller was told it failed."""
    if not conversation_ids:
        return
    await session.execute(
        delete(conversations).where(
            conversations.c.id.in_(conversation_ids),
            ~exists().where(messages.c.conversation_id == conversations.c.id),
            ~exists().where(turns.c.conversation_id == conversations.c.id, turns.c.state != "failed"),
        )
    )


async def record_reported_usage(*, session: AsyncSession, turn_id: str, reported: ReportedUsage) -> None:
    """Keep what the provider reported a running turn's call cost, as soon as it has."""
    await session.execute(
        update(turns)
        .where(turns.c.id == turn_id, turns.c.state == "running")
        .values(
            reported_usage={
                "provider": reported.provider,
                "model": reported.model,
                "usage": MessageToDict(reported.usage, preserving_proto_field_name=True),
            }
        )
    )


async def enqueue_turn_event(*, session: AsyncSession, subject: str, msg_id: str, event: events_pb2.TurnEvent) -> None:
    """A turn event published by the relay after the commit (the end of an interrupted turn)."""
    await kit_outbox.enqueue(session=session, table=outbox, subject=subject, msg_id=msg_id, message=event)


async def add_messages(
    *,
    session: AsyncSession,
    owner: Owner,
    conversation_id: str,
    turn_id: str,
    question: NewMessage,
    answer: NewMessage,
) -> tuple[MessageRecord, MessageRecord]:
    """Both messages of a turn and the conversation's new time, in the caller's transaction."""
    now = func.clock_timestamp()
    stored: list[MessageRecord] = []
    for message in (question, answer):
        row = (
            (
                await session.execute(
                    insert(messages)
                    .values(
                        id=str(uuid.uuid4()),
                        tenant_id=owner.tenant_id,
                        conversation_id=conversation_id,
                        turn_id=turn_id,
                        created_at=now,
                        **_message_values(message),
                    )
                    .returning(messages)
                )
            )
            .mappings()
            .one()
        )
        stored.append(_message(row))
    await session.execute(
        update(conversations)
        .where(conversations.c.id == conversation_id, conversations.c.tenant_id == owner.tenant_id)
        .values(updated_at=now)
    )
    return stored[0], stored[1]


async def record_usage(*, session: AsyncSession, usage_event: events_pb2.UsageRecorded) -> None:
    await kit_outbox.enqueue(
        session=session, table=outbox, subject=USAGE_RECORDED, msg_id=usage_event.event_id, message=usage_event
    )


async def request_summary(*, session: AsyncSession, job: chat_pb2.SummarizeJob) -> None:
    # One job per summary: a redelivered or repeated request within the stream's window is dropped.
    msg_id = f"summarize:{job.conversation_id}:{job.through_messages}"
    await kit_outbox.enqueue(session=session, table=outbox, subject=SUMMARIZE_JOBS, msg_id=msg_id, message=job)


async def save_summary(
    *, session: AsyncSession, tenant_id: str, conversation_id: str, summary: str, through_messages: int
) -> bool:
    """Keep a summary unless one covering as much or more is already stored (jobs may race)."""
    saved = await session.execute(
        update(conversations)
        .where(
            conversations.c.id == conversation_id,
            conversations.c.tenant_id == tenant_id,
            conversations.c.summarized_messages < through_messages,
        )
        .values(summary=summary, summarized_messages=through_messages)
        .returning(conversations.c.id)
    )
    return saved.first() is not None


async def delete_conversation(*, session: AsyncSession, owner: Owner, conversation_id: str) -> bool:
    if as_uuid(conversation_id) is None:
        return False
    deleted = await session.execute(
        delete(conversations)
        .where(
            conversations.c.id == conversation_id,
            conversations.c.tenant_id == owner.tenant_id,
            conversations.c.user_id == owner.user_id,
        )
        .returning(conversations.c.id)
    )
    return deleted.first() is not None
