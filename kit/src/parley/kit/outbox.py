"""The transactional outbox: an event is written in the same transaction as the change it
announces, and a relay publishes it to JetStream afterwards, with `Nats-Msg-Id` set so a
relay that crashes between publish and delete never produces a duplicate.

NATS down (no connection, timeouts) holds every row back, retried for ever: no row is to blame.
A row NATS itself refuses (too large, no stream takes its subject, a JetStream API error) is
tried again on each pass, the rows after it going out meanwhile; once it has failed `max_attempts`
times and is older than `park_after_seconds`, it is parked: kept in the table with its reason
(`parked_at`, `last_error`), never tried again, counted in `parley_outbox_parked_total`, and
announced on the PARKED stream like a consumer's dead letter (with its payload when that fits),
so the operators' dead-letter API lists it and can replay it.
"""

import asyncio
import logging
from datetime import timedelta
from typing import Any

import nats.errors
from google.protobuf.message import Message
from nats.js import JetStreamContext
from prometheus_client import Counter
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Integer,
    LargeBinary,
    MetaData,
    Row,
    Table,
    Text,
    delete,
    func,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from parley.kit.bus import PARKED_DELIVERIES_HEADER, PARKED_REASON_HEADER, PARKED_SUBJECT_HEADER
from parley.kit.contracts import parked_subject
from parley.kit.db import Sessions

log = logging.getLogger(__name__)

outbox_parked = Counter(
    "parley_outbox_parked_total", "outbox rows NATS kept refusing, parked with their reason", ["service", "subject"]
)

# NATS cannot be reached now: every row waits its turn again, none is to blame.
_NATS_DOWN = (
    nats.errors.ConnectionClosedError,
    nats.errors.ConnectionReconnectingError,
    nats.errors.ConnectionDrainingError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.OutboundBufferLimitError,
    nats.errors.TimeoutError,
    TimeoutError,
)
# The stream name a parked row's notice is filed under on PARKED (its "durable" is the service).
OUTBOX_PARKED_STREAM = "OUTBOX"


def outbox_columns() -> list[Column[Any]]:
    """Fresh columns, for the table below and for a service's migration that creates it."""
    return [
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("subject", Text, nullable=False),
        Column("msg_id", Text, nullable=False, unique=True),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
        # Publishing attempts NATS refused, the last refusal, and when the row was given up on.
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text, nullable=True),
        Column("parked_at", DateTime(timezone=True), nullable=True),
    ]


def outbox_table(metadata: MetaData) -> Table:
    return Table("outbox", metadata, *outbox_columns())


async def enqueue(*, session: AsyncSession, table: Table, subject: str, msg_id: str, message: Message) -> None:
    await session.execute(table.insert().values(subject=subject, msg_id=msg_id, payload=message.SerializeToString()))


class OutboxRelay:
    def __init__(
        self,
        *,
        sessions: Sessions,
        table: Table,
        js: JetStreamContext,
        batch_size: int = 100,
        poll_seconds: float = 1.0,
        publish_timeout: float = 5.0,
        max_attempts: int = 10,
        park_after_seconds: float = 300.0,
    ) -> None:
        self._sessions = sessions
        self._table = table
        self._js = js
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._publish_timeout = publish_timeout
        self._max_attempts = max_attempts
        # A stream a restarted NATS lost is declared again within seconds (bus.py): a row refused
        # for lack of it must not be parked before then.
        self._park_after = timedelta(seconds=park_after_seconds)
        self._service = table.schema or "outbox"
        self._wake = asyncio.Event()

    def notify(self) -> None:
        """Call after a commit that enqueued events, so they go out now rather than at the next poll."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                while await self.publish_pending() == self._batch_size:
                    pass
            except Exception:
                log.exception("outbox relay failed; retrying")
            self._wake.clear()
            waiters = {asyncio.create_task(self._wake.wait()), asyncio.create_task(stop.wait())}
            _, pending = await asyncio.wait(waiters, timeout=self._poll_seconds, return_when=asyncio.FIRST_COMPLETED)
            for task in pending | waiters:
                task.cancel()
        await self.publish_pending()

    async def publish_pending(self) -> int:
        """Publish a batch of waiting rows; how many went out (a full batch: call again)."""
        table = self._table
        async with self._sessions() as session, session.begin():
            # SKIP LOCKED lets several replicas relay side by side without publishing a row twice.
            rows = (
                await session.execute(
                    select(table.c.id, table.c.subject, table.c.msg_id, table.c.payload, table.c.attempts)
                    .add_columns((func.now() - table.c.created_at).label("age"))
                    .where(table.c.parked_at.is_(None))
                    .order_by(table.c.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            published: list[int] = []
            for row in rows:
                try:
                    await self._js.publish(
                        row.subject, row.payload, headers={"Nats-Msg-Id": row.msg_id}, timeout=self._publish_timeout
                    )
                except _NATS_DOWN:
                    raise  # rolled back: what went out is sent again later, and NATS drops the duplicates
                except nats.errors.Error as refused:  # NATS answered, and refused this row (or its size)
                    await self._refused(session, row, refused)
                    continue
                published.append(row.id)
            if published:
                await session.execute(delete(table).where(table.c.id.in_(published)))
            return len(published)

    async def _refused(self, session: AsyncSession, row: Row[Any], refused: Exception) -> None:
        attempts = row.attempts + 1
        reason = f"{type(refused).__name__}: {refused}"[:1000]
        park = attempts >= self._max_attempts and row.age >= self._park_after
        values: dict[str, Any] = {"attempts": attempts, "last_error": reason}
        if park:
            values["parked_at"] = func.now()
        await session.execute(update(self._table).where(self._table.c.id == row.id).values(**values))
        if not park:
            log.warning("NATS refused an outbox row (attempt %d): %s", attempts, reason)
            return
        outbox_parked.labels(self._service, row.subject).inc()
        log.error("parked an outbox row NATS kept refusing: %s", reason, extra={"fields": {"msg_id": row.msg_id}})
        headers = {
            PARKED_SUBJECT_HEADER: row.subject,
            PARKED_DELIVERIES_HEADER: str(attempts),
            PARKED_REASON_HEADER: f"the {self._service} outbox could not publish it: {reason}"[:1000],
        }
        notice = parked_subject(OUTBOX_PARKED_STREAM, self._service)
        try:
            await self._js.publish(notice, row.payload, headers=headers, timeout=self._publish_timeout)
        except (nats.errors.Error, TimeoutError):  # too large for PARKED too: the row and its reason stay
            log.exception("could not announce a parked outbox row on PARKED")
