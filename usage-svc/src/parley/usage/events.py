"""The subjects usage-svc consumes, and its consumers."""

from nats.aio.msg import Msg

from parley.kit import bus
from parley.kit.db import Sessions
from parley.usage import recording
from parley.v1.events_pb2 import UsageRecorded

USAGE_STREAM = "USAGE"
USAGE_RECORDED = "usage.recorded"
RECORDER_DURABLE = "usage-recorder"


def recorder(sessions: Sessions, *, durable: str = RECORDER_DURABLE) -> bus.Consumer:
    async def handle(message: Msg) -> None:
        await recording.record(sessions=sessions, event=UsageRecorded.FromString(message.data))

    return bus.Consumer(stream=USAGE_STREAM, durable=durable, subject=USAGE_RECORDED, handler=handle)


def consumers(sessions: Sessions) -> list[bus.Consumer]:
    return [recorder(sessions)]
