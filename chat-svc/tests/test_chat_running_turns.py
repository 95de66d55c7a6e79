"""Only a turn's owner can cancel it, and a turn being stored is past cancelling (across replicas:
test_chat_turns)."""

import asyncio
import uuid

from parley.chat.running_turns import RunningTurns
from parley.chat.store import Owner


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
