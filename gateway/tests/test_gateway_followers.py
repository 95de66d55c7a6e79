"""A follower of a turn that reads too slowly is ended, not buffered without bound, and resumes
where it got to (real NATS: the turn's events on JetStream)."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NatsClient
from prometheus_client import REGISTRY

from parley.gateway.events import FollowerBehind, TurnFeeds, TurnIdle, turn_events
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


# The shared feed: one JetStream consumer per turn per gateway process, read by every follower.


async def consumers_of(nats_client: NatsClient, subject: str) -> int:
    """The consumers NATS has on the turn's subject (CHATSTREAM holds every turn's events)."""
    consumers = await nats_client.jetstream().consumers_info("CHATSTREAM")
    return sum(1 for consumer in consumers if consumer.config.filter_subject == subject)


async def read_all(feeds: TurnFeeds, nats_client: NatsClient, subject: str, after_seq: int = 0) -> list[int]:
    events = feeds.follow(nats_client.jetstream(), subject, after_seq=after_seq, idle_seconds=10)
    return [event.seq async for event in events]


async def test_many_followers_of_one_turn_share_one_consumer(nats_client: NatsClient) -> None:
    subject = turn_subject(str(uuid.uuid4()), str(uuid.uuid4()))
    await publish(nats_client, subject, range(1, 2))
    feeds, followers = TurnFeeds(), 300
    started = asyncio.Event()
    first_seen = 0

    async def follower() -> list[int]:
        nonlocal first_seen
        seen: list[int] = []
        async for event in feeds.follow(nats_client.jetstream(), subject, idle_seconds=10):
            seen.append(event.seq)
            if event.seq == 1:
                first_seen += 1
                if first_seen == followers:
                    started.set()
        return seen

    tasks = [asyncio.create_task(follower()) for _ in range(followers)]
    await asyncio.wait_for(started.wait(), timeout=60)
    # Every follower is reading the turn: NATS holds one consumer for it, not one per follower.
    assert await consumers_of(nats_client, subject) == 1
    await publish(nats_client, subject, range(2, EVENTS + 1))
    results = await asyncio.gather(*tasks)
    assert all(seen == list(range(1, EVENTS + 1)) for seen in results)
    assert len(feeds) == 0  # the turn ended and its last follower left: nothing is kept


async def test_a_slow_follower_does_not_slow_the_others(nats_client: NatsClient) -> None:
    subject = turn_subject(str(uuid.uuid4()), str(uuid.uuid4()))
    await publish(nats_client, subject, range(1, 2))
    feeds = TurnFeeds(max_events=8)  # the turn (60 events) is longer than the list keeps
    behind_before = REGISTRY.get_sample_value("parley_gateway_turn_followers_behind_total") or 0.0
    fast_done, slow_reading = asyncio.Event(), asyncio.Event()
    slow_seen: list[int] = []

    async def slow() -> None:
        async for event in feeds.follow(nats_client.jetstream(), subject, idle_seconds=10):
            slow_seen.append(event.seq)
            slow_reading.set()
            # Its client stops reading after the first event until every other follower is done.
            await fast_done.wait()

    slow_task = asyncio.create_task(slow())
    await asyncio.wait_for(slow_reading.wait(), timeout=30)
    fast_tasks = [asyncio.create_task(read_all(feeds, nats_client, subject)) for _ in range(3)]
    await publish(nats_client, subject, range(2, EVENTS + 1))
    # The others get the whole turn while the slow one still holds its first event.
    fast = await asyncio.gather(*fast_tasks)
    assert all(seen == list(range(1, EVENTS + 1)) for seen in fast) and slow_seen == [1]
    fast_done.set()
    with pytest.raises(FollowerBehind) as behind:
        await slow_task
    assert behind.value.last_seq == 1 and slow_seen == [1]
    assert REGISTRY.get_sample_value("parley_gateway_turn_followers_behind_total") == behind_before + 1

    # It resumes with Last-Event-ID 1: the list no longer holds event 2, the stream does.
    assert await read_all(feeds, nats_client, subject, after_seq=1) == list(range(2, EVENTS + 1))
    assert len(feeds) == 0


async def test_a_late_follower_replays_the_turn_from_the_shared_list(nats_client: NatsClient) -> None:
    subject = turn_subject(str(uuid.uuid4()), str(uuid.uuid4()))
    await publish(nats_client, subject, range(1, EVENTS))  # everything but the end
    feeds = TurnFeeds()
    first = feeds.follow(nats_client.jetstream(), subject, idle_seconds=10)
    early = [event.seq async for event in _take(first, EVENTS - 1)]
    assert early == list(range(1, EVENTS))
    # A follower joining now, and one resuming after event 30, read what the feed keeps.
    late = asyncio.create_task(read_all(feeds, nats_client, subject))
    resumed = asyncio.create_task(read_all(feeds, nats_client, subject, after_seq=30))
    await asyncio.sleep(0.2)
    assert await consumers_of(nats_client, subject) == 1
    await publish(nats_client, subject, range(EVENTS, EVENTS + 1))
    assert await late == list(range(1, EVENTS + 1))
    assert await resumed == list(range(31, EVENTS + 1))
    assert [event.seq async for event in first] == [EVENTS]
    assert len(feeds) == 0
    # With nobody following any more, a new follower replays the whole turn from the stream.
    assert await read_all(feeds, nats_client, subject) == list(range(1, EVENTS + 1))


async def test_a_turn_that_goes_quiet_ends_every_follower(nats_client: NatsClient) -> None:
    subject = turn_subject(str(uuid.uuid4()), str(uuid.uuid4()))
    await publish(nats_client, subject, range(1, 3))
    feeds = TurnFeeds()

    async def follow() -> list[int]:
        seen: list[int] = []
        with pytest.raises(TurnIdle):
            async for event in feeds.follow(nats_client.jetstream(), subject, idle_seconds=1):
                seen.append(event.seq)
        return seen

    assert await asyncio.gather(follow(), follow()) == [[1, 2], [1, 2]]
    assert len(feeds) == 0


async def _take(events: AsyncIterator[events_pb2.TurnEvent], count: int) -> AsyncIterator[events_pb2.TurnEvent]:
    for _ in range(count):
        yield await anext(events)


async def test_each_event_is_rendered_once_for_every_follower(nats_client: NatsClient) -> None:
    subject = turn_subject(str(uuid.uuid4()), str(uuid.uuid4()))
    await publish(nats_client, subject, range(1, 2))
    feeds, rendered = TurnFeeds(), 0
    all_reading = asyncio.Event()
    reading = 0

    def frame(event: events_pb2.TurnEvent) -> str:
        nonlocal rendered
        rendered += 1
        return f"frame {event.seq}"

    async def follower() -> list[str]:
        nonlocal reading
        frames: list[str] = []
        async for event, made in feeds.rendered(nats_client.jetstream(), subject, frame, idle_seconds=10):
            frames.append(made)
            if event.seq == 1:
                reading += 1
                if reading == 20:
                    all_reading.set()
        return frames

    tasks = [asyncio.create_task(follower()) for _ in range(20)]
    await asyncio.wait_for(all_reading.wait(), timeout=30)
    await publish(nats_client, subject, range(2, EVENTS + 1))
    results = await asyncio.gather(*tasks)
    assert all(frames == [f"frame {seq}" for seq in range(1, EVENTS + 1)] for frames in results)
    assert rendered == EVENTS  # once per event, not once per event per follower
