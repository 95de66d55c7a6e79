"""What retrieval consumes from NATS, and what it publishes (through the outbox: indexing.py,
vectors.py).

consumes  DOCS  CHUNKS_UPSERTED  ChunksUpserted  durable retrieval-upserted  → Indexer.receive (a part: held
                                                 until the version is whole, then Indexer.index_version)
          DOCS  CHUNKS_DELETED   ChunksDeleted   durable retrieval-deleted   → Indexer.remove
publishes DOCS  CHUNKS_INDEXED   ChunksIndexed   Nats-Msg-Id indexed_msg_id(document_id, version);
                                                 with `error` when an upsert is parked: index_failed_msg_id
          USAGE USAGE_RECORDED   UsageRecorded   kind USAGE_EMBEDDING, Nats-Msg-Id its event_id
(names from parley.kit.contracts)
"""

from nats.aio.msg import Msg

from parley.kit.bus import Consumer
from parley.kit.contracts import CHUNKS_DELETED, CHUNKS_INDEXED, CHUNKS_UPSERTED, USAGE_RECORDED
from parley.kit.outbox import OutboxRelay
from parley.retrieval.indexing import Indexer
from parley.v1 import events_pb2

STREAM = "DOCS"
CONSUMES = (CHUNKS_UPSERTED, CHUNKS_DELETED)
PUBLISHES = (CHUNKS_INDEXED, USAGE_RECORDED)

UPSERTED_DURABLE = "retrieval-upserted"
DELETED_DURABLE = "retrieval-deleted"


def consumers(
    *,
    indexer: Indexer,
    relay: OutboxRelay,
    upserted_durable: str = UPSERTED_DURABLE,
    deleted_durable: str = DELETED_DURABLE,
    indexing_concurrency: int = 1,
) -> list[Consumer]:
    async def on_upserted(message: Msg) -> None:
        if await indexer.receive(events_pb2.ChunksUpserted.FromString(message.data)):
            # The ChunksIndexed it enqueued need not wait for the relay's next poll.
            relay.notify()

    async def on_upsert_parked(message: Msg, reason: str) -> None:
        await indexer.give_up(events_pb2.ChunksUpserted.FromString(message.data), reason)
        relay.notify()

    async def on_deleted(message: Msg) -> None:
        await indexer.remove(events_pb2.ChunksDeleted.FromString(message.data))

    return [
        # Versions are claimed (indexing.py), so upserts may be indexed in any order: one
        # document's embedding overlaps another's writes.
        Consumer(
            stream=STREAM,
            durable=upserted_durable,
            subject=CHUNKS_UPSERTED,
            handler=on_upserted,
            concurrency=indexing_concurrency,
            on_parked=on_upsert_parked,
        ),
        Consumer(stream=STREAM, durable=deleted_durable, subject=CHUNKS_DELETED, handler=on_deleted),
    ]
