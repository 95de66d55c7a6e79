"""Row-level security, the second lock behind every query's tenant filter (migration 0010): a
transaction given to one tenant (store.enter_tenant) sees that tenant's conversations, messages
and turns whatever its query forgets; one that names no tenant sees none; nothing is written into
another tenant. The lease sweep, which crosses tenants, still settles every tenant's lapsed turns."""

import uuid
from datetime import timedelta

import pytest
from nats.aio.client import Client as NatsClient
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.chat import store
from parley.chat.config import Settings
from parley.chat.models import conversations, messages, turns
from parley.kit import db

from .test_chat_turns import EndlessProvider, harness, lapse

TABLES = (conversations, messages, turns)


async def _seed(sessions: db.Sessions, owner: store.Owner) -> tuple[str, str]:
    """A conversation of `owner` with one turn and its two messages: (conversation id, turn id)."""
    turn_id = str(uuid.uuid4())
    async with sessions.begin() as session:
        await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
        conversation = await store.create_conversation(
            session=session, owner=owner, title="descaling", collection_ids=[]
        )
        await store.add_turn(
            session=session, owner=owner, conversation_id=conversation.id, turn_id=turn_id, lease=timedelta(minutes=1)
        )
        await store.add_messages(
            session=session,
            owner=owner,
            conversation_id=conversation.id,
            turn_id=turn_id,
            question=store.NewMessage(role="user", content="How often?"),
            answer=store.NewMessage(role="assistant", content="Monthly."),
        )
    return conversation.id, turn_id


def _owner() -> store.Owner:
    return store.Owner(tenant_id=str(uuid.uuid4()), user_id="alice")


async def _counts(session: AsyncSession) -> tuple[int, ...]:
    # No WHERE at all: what the policy lets through.
    return tuple(
        [int((await session.execute(select(func.count()).select_from(table))).scalar_one()) for table in TABLES]
    )


async def test_a_query_without_a_tenant_sees_no_rows(sessions: db.Sessions) -> None:
    await _seed(sessions, _owner())
    async with sessions.begin() as session:
        assert min(await _counts(session)) >= 1  # the login role, the tables' owner, sees them all
        await session.execute(text("SELECT set_config('role', :role, true)"), {"role": store.TENANT_ROLE})
        assert await _counts(session) == (0, 0, 0)


async def test_a_tenants_transaction_sees_none_of_another_tenants_rows(sessions: db.Sessions) -> None:
    ours, theirs = _owner(), _owner()
    _, our_turn = await _seed(sessions, ours)
    their_conversation, their_turn = await _seed(sessions, theirs)
    await lapse(sessions, our_turn, their_turn)
    async with sessions.begin() as session:
        await store.enter_tenant(session=session, tenant_id=ours.tenant_id)
        assert await _counts(session) == (1, 2, 1)
        for table in TABLES:
            assert set((await session.execute(select(table.c.tenant_id))).scalars()) == {ours.tenant_id}
        # Queries that name the other tenant's rows find nothing.
        assert (
            await store.conversation_messages(
                session=session, tenant_id=theirs.tenant_id, conversation_id=their_conversation
            )
            == []
        )
        assert await store.get_conversation(session=session, owner=theirs, conversation_id=their_conversation) is None
        # The sweep's query has no tenant filter: in a tenant's transaction it finds that tenant's turns only.
        assert [turn.id for turn in await store.lapsed_turns(session=session, spare=[])] == [our_turn]
    async with sessions() as session:  # across tenants, as the sweep looks: both
        keys = await store.lapsed_turn_keys(session=session, spare=[])
    assert {store.LapsedKey(ours.tenant_id, our_turn), store.LapsedKey(theirs.tenant_id, their_turn)} <= set(keys)


async def test_nothing_is_written_into_another_tenant(sessions: db.Sessions) -> None:
    ours, theirs = _owner(), _owner()
    their_conversation, _ = await _seed(sessions, theirs)
    with pytest.raises(DBAPIError, match="row-level security"):
        async with sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=ours.tenant_id)
            await store.create_conversation(session=session, owner=theirs, title="intruder", collection_ids=[])
    async with sessions.begin() as session:
        await store.enter_tenant(session=session, tenant_id=ours.tenant_id)
        assert not await store.save_summary(
            session=session,
            tenant_id=theirs.tenant_id,
            conversation_id=their_conversation,
            summary="overwritten",
            through_messages=2,
        )
        assert not await store.delete_conversation(session=session, owner=theirs, conversation_id=their_conversation)
    async with sessions.begin() as session:
        await store.enter_tenant(session=session, tenant_id=theirs.tenant_id)
        kept = await store.get_conversation(session=session, owner=theirs, conversation_id=their_conversation)
    assert kept is not None and kept.summary == ""


async def test_one_sweep_settles_the_lapsed_turns_of_every_tenant(
    settings: Settings, sessions: db.Sessions, nats_client: NatsClient
) -> None:
    a = await harness(settings, sessions, nats_client, provider=EndlessProvider())
    b = await harness(settings, sessions, nats_client, provider=EndlessProvider())
    assert a.owner.tenant_id != b.owner.tenant_id
    started_a = await a.runner.start(a.identity, a.ask())
    started_b = await b.runner.start(b.identity, b.ask())
    await lapse(sessions, started_a.turn_id, started_b.turn_id)
    sweeper = (await harness(settings, sessions, nats_client)).runner

    settled = await sweeper.leases.settle_lapsed()

    assert {started_a.turn_id, started_b.turn_id} <= set(settled)
    for h, started in ((a, started_a), (b, started_b)):
        view = await h.conversations.turn(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
        assert view.turn.state == "interrupted"
        [billed] = await h.usage_events(started.conversation_id)
        assert billed.tenant_id == h.owner.tenant_id and billed.billed_at_hold
    for h, started in ((a, started_a), (b, started_b)):  # the frozen replicas' tasks end
        h.runner.cancel_here(h.owner, conversation_id=started.conversation_id, turn_id=started.turn_id)
        await h.runner.drain(grace_seconds=1)
