"""What retrieval consumes from NATS, and what it publishes (through the outbox, see indexing.py).

consumes  DOCS docs.chunks.upserted  ChunksUpserted  durable retrieval-upserted
          DOCS docs.chunks.deleted   ChunksDeleted   durable retrieval-deleted
publishes DOCS docs.chunks.indexed   ChunksIndexed   Nats-Msg-Id indexed:<document_id>:<version>
"""

from nats.aio.msg import Msg

from parley.kit.bus import Consumer
from parley.kit.db import Sessions
from parley.kit.outbox import OutboxRelay
from parley.retrieval import indexing
from parley.retrieval.embeddings import Embedder
from parley.v1 import events_pb2

STREAM = "DOCS"
UPSERTED_SUBJECT = "docs.chunks.upserted"
DELETED_SUBJECT = "docs.chunks.deleted"
INDEXED_SUBJECT = indexing.INDEXED_SUBJECT

UPSERTED_DURABLE = "retrieval-upserted"
DELETED_DURABLE = "retrieval-deleted"


def consumers(
    *,
    sessions: Sessions,
    embedder: Embedder,
    relay: OutboxRelay,
    upserted_durable: str = UPSERTED_DURABLE,
    deleted_durable: str = DELETED_DURABLE,
) -> list[Consumer]:
    async def on_upserted(message: Msg) -> None:
        event = events_pb2.ChunksUpserted.FromString(message.data)
        if await indexing.index_document_version(sessions=sessions, embedder=embedder, event=event):
            relay.notify()

    async def on_deleted(message: Msg) -> None:
        await indexing.remove(sessions=sessions, event=events_pb2.ChunksDeleted.FromString(message.data))

    return [
        Consumer(stream=STREAM, durable=upserted_durable, subject=UPSERTED_SUBJECT, handler=on_upserted),
        Consumer(stream=STREAM, durable=deleted_durable, subject=DELETED_SUBJECT, handler=on_deleted),
    ]
