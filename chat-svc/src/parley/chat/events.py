"""The subjects chat-svc publishes and consumes (all named in parley.kit.contracts):

- publishes every event of a turn on `turn_subject(conversation, turn)` (TURN_STREAMS), from
  turn_stream.TurnStream;
- publishes `USAGE_RECORDED` for every model call, through the outbox (store.record_usage);
- requests and serves `cancel_subject(turn)` (CANCEL_TURNS, core NATS request/reply): only the
  replica running a turn can stop it, so a cancel is asked of every replica.
"""

from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from parley.chat.store import Owner
from parley.chat.turns import TurnRunner
from parley.kit.contracts import CANCEL_TURNS
from parley.v1 import events_pb2


async def serve_cancels(nc: NatsClient, turns: TurnRunner) -> None:
    """Take cancel requests for the turns this replica runs (their owners' only), and answer
    those it cancelled: no answer means "not running here"."""

    async def on_request(message: Msg) -> None:
        command = events_pb2.CancelTurnCommand.FromString(message.data)
        owner = Owner(command.tenant_id, command.user_id)
        if turns.cancel_here(owner, conversation_id=command.conversation_id, turn_id=command.turn_id):
            await message.respond(b"")

    await nc.subscribe(CANCEL_TURNS, cb=on_request)
