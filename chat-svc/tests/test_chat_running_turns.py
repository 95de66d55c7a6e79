"""Only a turn's owner can cancel it, and a turn being stored is past cancelling."""

import asyncio
import uuid

from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.chat.clients import RetrievalClient
from parley.chat.config import Settings
from parley.chat.store import Owner
from parley.chat.turns import RunningTurns, TurnRunner
from parley.kit import db
from parley.kit.outbox import OutboxRelay
from parley.kit.testing import Infra


async def test_only_the_owner_cancels_and_finishing_turns_complete() -> None:
    turns = RunningTurns()
    alice, mallory = Owner("tenant-a", "alice"), Owner("tenant-b", "mallory")
    conversation, turn = str(uuid.uuid4()), str(uuid.uuid4())
    task = asyncio.create_task(asyncio.sleep(30))
    turns.add(turn, owner=alice, conversation_id=conversation, task=task)

    assert turns.cancel(mallory, conversation, turn) is False
    assert turns.cancel(alice, str(uuid.uuid4()), turn) is False
    await asyncio.sleep(0)
    assert not task.cancelled()
    assert turns.cancel(alice, conversation, turn) is True
    await asyncio.wait([task])
    assert task.cancelled()
    assert turns.cancel(alice, conversation, turn) is False  # done turns leave the registry

    storing_turn = str(uuid.uuid4())
    storing = asyncio.create_task(asyncio.sleep(0.05, result="stored"))
    turns.add(storing_turn, owner=alice, conversation_id=conversation, task=storing)
    turns.finishing(storing_turn)
    assert turns.cancel(alice, conversation, storing_turn) is True
    await turns.drain(grace_seconds=1)
    assert storing.result() == "stored"


async def test_drain_cancels_what_outlives_the_grace() -> None:
    turns = RunningTurns()
    slow = asyncio.create_task(asyncio.sleep(30))
    turns.add(str(uuid.uuid4()), owner=Owner("t", "u"), conversation_id="c", task=slow)
    await turns.drain(grace_seconds=0.05)
    assert slow.cancelled()


async def test_a_cancel_reaches_the_replica_that_runs_the_turn(
    nats_client: NatsClient, infra: Infra, engine: AsyncEngine
) -> None:
    settings = Settings(database_url=infra.database_url, nats_url=infra.nats_url, retrieval_target="unused:1")

    def replica() -> TurnRunner:
        return TurnRunner(
            settings=settings,
            sessions=db.session_factory(engine),
            nc=nats_client,
            js=nats_client.jetstream(),
            retrieval=RetrievalClient("127.0.0.1:9", deadline_seconds=1),
            providers={},
            relay=OutboxRelay(sessions=None, table=None, js=None),  # type: ignore[arg-type]
        )

    running_it, asked = replica(), replica()
    await running_it.serve_cancels()
    alice, mallory = Owner(str(uuid.uuid4()), "alice"), Owner(str(uuid.uuid4()), "mallory")
    conversation, turn = str(uuid.uuid4()), str(uuid.uuid4())
    task = asyncio.create_task(asyncio.sleep(30))
    running_it._running.add(turn, owner=alice, conversation_id=conversation, task=task)

    assert await asked.cancel(mallory, conversation, turn) is False
    assert await asked.cancel(alice, conversation, "not-a-uuid") is False
    assert not task.cancelled()
    assert await asked.cancel(alice, conversation, turn) is True
    await asyncio.wait([task])
    assert task.cancelled()
