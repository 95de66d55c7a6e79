"""A follower of a turn that reads too slowly is ended, not buffered without bound, and resumes
where it got to (real NATS: the turn's events on JetStream)."""

import asyncio
import uuid

import pytest
from nats.aio.client import Client as NatsClient

from parley.gateway.events import FollowerBehind, turn_events
from parley.kit.contracts import turn_event_msg_id, turn_subject
from parley.v1 import events_pb2

EVENTS = 60


def event_of(turn_id: str, seq: int) -> events_pb2.TurnEvent:
    if seq == EVENTS:
        return events_pb2.TurnEvent(turn_id=turn_id, seq=seq, end=events_pb2.TurnEnd(finish_reason="stop"))
    return events_pb2.TurnEvent(turn_id=turn_id, seq=seq, delta=events_pb2.TurnDelta(text=f"t{seq} "))


async def publish(nats_client: NatsClient, subject: str, seqs: range) -> None:
    js = nats_client.jetstream()
    turn_id = subject.rsplit(".", 1)[1]
    for seq in seqs:
        message = event_of(turn_id, seq).SerializeToString()
        await js.publish(subject, message, headers={"Nats-Msg-Id": turn_event_msg_id(turn_id, seq)})


async def publish_turn(nats_client: NatsClient) -> str:
    subject = turn_subject(str(uuid.uuid4()), str(uuid.uuid4()))
    await publish(nats_client, subject, range(1, EVENTS + 1))
    return subject


async def test_a_slow_follower_is_ended_and_resumes_after_its_last_event(nats_client: NatsClient) -> None:
    subject = turn_subject(str(uuid.uuid4()), str(uuid.uuid4()))
    await publish(nats_client, subject, range(1, 2))
    seen: list[int] = []
    with pytest.raises(FollowerBehind) as behind:
        async for event in turn_events(nats_client.jetstream(), subject, idle_seconds=10, max_pending_events=8):
            seen.append(event.seq)
            if event.seq == 1:
                # While this reader holds the first event, the rest of the turn is written and
                # fills its buffer (8 events): it is too far behind.
                await publish(nats_client, subject, range(2, EVENTS + 1))
                await asyncio.sleep(0.5)
    assert seen == list(range(1, len(seen) + 1)) and len(seen) < EVENTS
    assert behind.value.last_seq == seen[-1]

    # Resumed with Last-Event-ID, at a reader's normal pace, it gets every later event, once, in order.
    resumed = turn_events(nats_client.jetstream(), subject, after_seq=seen[-1], idle_seconds=10)
    rest = [event.seq async for event in resumed]
    assert rest == list(range(seen[-1] + 1, EVENTS + 1))


async def test_a_follower_that_joins_late_replays_the_whole_turn(nats_client: NatsClient) -> None:
    subject = await publish_turn(nats_client)
    replayed = [event.seq async for event in turn_events(nats_client.jetstream(), subject, idle_seconds=10)]
    assert replayed == list(range(1, EVENTS + 1))
