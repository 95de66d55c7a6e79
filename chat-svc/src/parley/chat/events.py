"""The subjects chat-svc publishes and consumes (all named in parley.kit.contracts):

- publishes every event of a turn on `turn_subject(conversation, turn)` (TURN_STREAMS), from
  turn_stream.TurnStream; the `error` that ends a turn whose replica died goes through the outbox
  (leases.TurnLeases), numbered after the turn's last event;
- publishes `USAGE_RECORDED` for every model call, through the outbox (store.record_usage);
- requests and serves `cancel_subject(turn)` (CANCEL_TURNS, core NATS request/reply): only the
  replica running a turn can stop it, so a cancel is asked of every replica;
- publishes `SUMMARIZE_JOBS` through the outbox (store.request_summary, when a turn moves a
  conversation's window) and consumes it (`summaries`): memory.Summarizer folds the older
  messages into the rolling summary.
"""

import logging

from google.protobuf.message import DecodeError
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from parley.chat.memory import Summarizer
from parley.chat.store import Owner
from parley.chat.turns import TurnRunner
from parley.kit import bus
from parley.kit.contracts import CANCEL_TURNS, SUMMARIZE_JOBS
from parley.v1 import chat_pb2, events_pb2

log = logging.getLogger(__name__)


async def serve_cancels(nc: NatsClient, turns: TurnRunner) -> None:
    """Take cancel requests for the turns this replica runs (their owners' only), and answer
    those it cancelled: no answer means "not running here"."""

    async def on_request(message: Msg) -> None:
        command = events_pb2.CancelTurnCommand.FromString(message.data)
        owner = Owner(command.tenant_id, command.user_id)
        if turns.cancel_here(owner, conversation_id=command.conversation_id, turn_id=command.turn_id):
            await message.respond(b"")

    await nc.subscribe(CANCEL_TURNS, cb=on_request)


def summaries(memory: Summarizer) -> bus.Consumer:
    async def on_job(message: Msg) -> None:
        try:
            job = chat_pb2.SummarizeJob.FromString(message.data)
        except DecodeError:
            log.error("dropped an unreadable SummarizeJob", extra={"fields": {"subject": message.subject}})
            return
        await memory.summarize(job)

    # A summary is one model call; give it time before JetStream redelivers.
    return bus.Consumer(
        stream="JOBS", durable="chat-summarize", subject=SUMMARIZE_JOBS, handler=on_job, ack_wait_seconds=120.0
    )
