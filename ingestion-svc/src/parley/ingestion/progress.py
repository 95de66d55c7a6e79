"""A document's progress: announced on progress.document.<id> after each committed step, and
watched from there.

PROGRESS keeps those messages for an hour, so a watcher replays the current version's steps from
the first (QUEUED) instead of starting wherever the worker happens to be when it connects; the
row fills in a step the stream no longer has (or never got: publishing is best effort).
"""

import logging
from collections.abc import AsyncIterator

from google.protobuf.message import DecodeError
from nats.js import JetStreamContext

from parley.ingestion import store
from parley.ingestion.messages import to_proto
from parley.ingestion.models import Status
from parley.ingestion.store import DocumentRecord
from parley.kit.contracts import analyzing_msg_id, progress_msg_id, progress_subject
from parley.kit.db import Sessions
from parley.kit.errors import NotFound
from parley.kit.ids import parse_id
from parley.kit.timestamps import to_timestamp
from parley.v1 import ingestion_pb2

log = logging.getLogger(__name__)

PROGRESS_STREAM = "PROGRESS"
TERMINAL = frozenset({ingestion_pb2.DOCUMENT_STATUS_READY, ingestion_pb2.DOCUMENT_STATUS_FAILED})


def progress_message(document: DocumentRecord) -> ingestion_pb2.DocumentProgress:
    return to_proto(
        ingestion_pb2.DocumentProgress,
        document,
        document_id=str(document.id),
        at=to_timestamp(document.updated_at),
    )


# Where each status comes on a version's way (the enum's numbers are wire ids, not an order).
STAGE_RANK = {
    ingestion_pb2.DOCUMENT_STATUS_QUEUED: 1,
    ingestion_pb2.DOCUMENT_STATUS_PARSING: 2,
    ingestion_pb2.DOCUMENT_STATUS_CHUNKING: 3,
    ingestion_pb2.DOCUMENT_STATUS_INDEXING: 4,
    ingestion_pb2.DOCUMENT_STATUS_ANALYZING: 5,
    ingestion_pb2.DOCUMENT_STATUS_READY: 6,
    ingestion_pb2.DOCUMENT_STATUS_FAILED: 6,
}


def _order(progress: ingestion_pb2.DocumentProgress) -> tuple[int, int, int]:
    """Steps of one version only move forward, and a later version comes after them all. Within
    ANALYZING, `done` grows: each artifact batch written is a step of its own."""
    return progress.version, STAGE_RANK.get(progress.status, 0), progress.done


class Progress:
    def __init__(self, *, sessions: Sessions, js: JetStreamContext) -> None:
        self._sessions = sessions
        self._js = js

    async def publish(self, document: DocumentRecord) -> None:
        """The row is the truth and watchers fall back on it: a failure here must not fail (and
        so redeliver) work that is already committed."""
        if document.status == Status.ANALYZING:
            msg_id = analyzing_msg_id(document.id, document.version, document.done)
        else:
            msg_id = progress_msg_id(document.id, document.version, document.status)
        try:
            await self._js.publish(
                progress_subject(document.id),
                progress_message(document).SerializeToString(),
                headers={"Nats-Msg-Id": msg_id},
            )
        except Exception:
            log.warning(
                "could not publish progress", exc_info=True, extra={"fields": {"document_id": str(document.id)}}
            )

    async def watch(self, *, tenant_id: str, document_id: str) -> AsyncIterator[ingestion_pb2.DocumentProgress]:
        """The current version's steps in order, each once, from QUEUED until READY or FAILED."""
        document_uuid = parse_id(document_id, kind="document")
        # Subscribed before the row is read, with the stream's history first: no step can fall
        # between the two, and one that is in both is dropped by its order.
        subscription = await self._js.subscribe(
            progress_subject(document_uuid), stream=PROGRESS_STREAM, ordered_consumer=True
        )
        try:
            info = await subscription.consumer_info()
            delivered = info.delivered.consumer_seq if info.delivered is not None else 0
            kept = (delivered or 0) + (info.num_pending or 0)
            async with self._sessions() as session:
                await store.enter_tenant(session=session, tenant_id=tenant_id)
                document = await store.get_document(session=session, tenant_id=tenant_id, document_id=document_uuid)
            if document is None:
                raise NotFound(f"document {document_id!r} not found")
            current = progress_message(document)
            # Older versions' steps are history of another upload.
            last = (document.version, 0, 0)
            if kept == 0:
                yield current
                if current.status in TERMINAL:
                    return
                last = _order(current)
            stored = None if kept == 0 else current
            received = 0
            async for message in subscription.messages:
                received += 1
                try:
                    progress = ingestion_pb2.DocumentProgress.FromString(message.data)
                except DecodeError:
                    progress = None  # a stray message on the subject is not the watcher's problem
                if progress is not None and progress.tenant_id != tenant_id:
                    progress = None
                pending = [] if progress is None else [progress]
                # The row goes where it belongs among the stream's steps: before the first one past
                # it, or after the history when the history never reaches it.
                if stored is not None and progress is not None and _order(progress) > _order(stored):
                    pending.insert(0, stored)
                    stored = None
                elif stored is not None and received >= kept:
                    pending.append(stored)
                    stored = None
                for step in pending:
                    if _order(step) <= last:
                        continue
                    yield step
                    if step.status in TERMINAL:
                        return
                    last = _order(step)
        finally:
            await subscription.unsubscribe()
