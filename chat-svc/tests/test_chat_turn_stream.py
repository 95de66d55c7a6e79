"""A turn's events on real JetStream: numbered in order, tokens coalesced into frames, retries deduplicated."""

import uuid
from datetime import UTC, datetime

from nats.aio.client import Client as NatsClient
from nats.js.api import DeliverPolicy

from parley.chat.turn_stream import MAX_UNACKED_FRAMES, TurnStream
from parley.kit.contracts import turn_event_msg_id, turn_subject
from parley.v1 import chat_pb2, common_pb2, events_pb2


async def read_turn(nats_client: NatsClient, subject: str) -> list[events_pb2.TurnEvent]:
    js = nats_client.jetstream()
    subscription = await js.subscribe(subject, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL)
    events: list[events_pb2.TurnEvent] = []
    try:
        while not events or events[-1].WhichOneof("kind") not in ("end", "error"):
            events.append(events_pb2.TurnEvent.FromString((await subscription.next_msg(timeout=5)).data))
    finally:
        await subscription.unsubscribe()
    return events


async def test_events_are_numbered_and_deltas_coalesced(nats_client: NatsClient) -> None:
    conversation_id, turn_id = str(uuid.uuid4()), str(uuid.uuid4())
    stream = TurnStream(
        nats_client.jetstream(),
        conversation_id=conversation_id,
        turn_id=turn_id,
        frame_chars=10,
        frame_seconds=60,
        publish_timeout=5,
    )
    for token in ["Desc", "ale ", "every", " 200", " shots", "."]:
        await stream.delta(token)
    await stream.sources([chat_pb2.Source(index=1, document_id="d")])
    await stream.usage(common_pb2.TokenUsage(input_tokens=10, output_tokens=6), model="local")
    stored_at = datetime(2026, 3, 1, 12, 0, 5, tzinfo=UTC)
    await stream.end(user_message_id="u", assistant_message_id="a", finish_reason="stop", created_at=stored_at)

    events = await read_turn(nats_client, stream.subject)
    assert stream.subject == turn_subject(conversation_id, turn_id)
    assert [event.seq for event in events] == [1, 2, 3, 4, 5, 6]
    deltas = [event.delta.text for event in events if event.WhichOneof("kind") == "delta"]
    # The first token at once (what a person waits for), then 6 tokens in 2 frames.
    assert deltas == ["Desc", "ale every 200", " shots."]
    assert [event.WhichOneof("kind") for event in events[3:]] == ["sources", "usage", "end"]
    assert all(event.turn_id == turn_id for event in events)
    assert events[-1].end.created_at.ToDatetime(tzinfo=UTC) == stored_at  # a whole answer's time


async def test_a_retried_publish_is_not_a_second_event(nats_client: NatsClient) -> None:
    js = nats_client.jetstream()
    turn_id = str(uuid.uuid4())
    subject = turn_subject(uuid.uuid4(), turn_id)
    event = events_pb2.TurnEvent(turn_id=turn_id, seq=1, end=events_pb2.TurnEnd(finish_reason="stop"))
    first = await js.publish(subject, event.SerializeToString(), headers={"Nats-Msg-Id": turn_event_msg_id(turn_id, 1)})
    again = await js.publish(subject, event.SerializeToString(), headers={"Nats-Msg-Id": turn_event_msg_id(turn_id, 1)})
    assert again.duplicate and again.seq == first.seq
    assert len(await read_turn(nats_client, subject)) == 1


async def test_pipelined_frames_arrive_in_order_before_the_end(nats_client: NatsClient) -> None:
    # Every token its own frame: more frames than may wait for their acknowledgements at once.
    stream = TurnStream(
        nats_client.jetstream(),
        conversation_id=str(uuid.uuid4()),
        turn_id=str(uuid.uuid4()),
        frame_chars=1,
        frame_seconds=60,
        publish_timeout=5,
    )
    tokens = [f"t{n} " for n in range(3 * MAX_UNACKED_FRAMES)]
    for token in tokens:
        await stream.delta(token)
    await stream.error(code="cancelled", message="the turn was cancelled")

    events = await read_turn(nats_client, stream.subject)
    assert [event.seq for event in events] == list(range(1, len(tokens) + 2))
    assert [event.delta.text for event in events[:-1]] == tokens
    assert events[-1].error.code == "cancelled"
