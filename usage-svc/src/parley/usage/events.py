"""What usage-svc consumes from NATS (it publishes nothing).

consumes  USAGE USAGE_RECORDED  UsageRecorded  durable usage-recorder  → Recorder.record
(names from parley.kit.contracts; every service that calls a model publishes it)
"""

from nats.aio.msg import Msg

from parley.kit import bus
from parley.kit.contracts import USAGE_RECORDED
from parley.usage.recording import Recorder
from parley.v1.events_pb2 import UsageRecorded

STREAM = "USAGE"
CONSUMES = (USAGE_RECORDED,)
RECORDER_DURABLE = "usage-recorder"


def recorder_consumer(recorder: Recorder, *, durable: str = RECORDER_DURABLE) -> bus.Consumer:
    async def handle(message: Msg) -> None:
        await recorder.record(UsageRecorded.FromString(message.data))

    return bus.Consumer(stream=STREAM, durable=durable, subject=USAGE_RECORDED, handler=handle)


def consumers(*, recorder: Recorder) -> list[bus.Consumer]:
    return [recorder_consumer(recorder)]
