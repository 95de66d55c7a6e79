"""The transactional outbox: an event is written in the same transaction as the change it
announces, and a relay publishes it to JetStream afterwards, with `Nats-Msg-Id` set so a
relay that crashes between publish and delete never produces a duplicate.
"""

import asyncio
import logging
from typing import Any

from google.protobuf.message import Message
from nats.js import JetStreamContext
from sqlalchemy import BigInteger, Column, DateTime, Identity, LargeBinary, MetaData, Table, Text, delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.kit.db import Sessions

log = logging.getLogger(__name__)


def outbox_columns() -> list[Column[Any]]:
    """Fresh columns, for the table below and for a service's migration that creates it."""
    return [
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("subject", Text, nullable=False),
        Column("msg_id", Text, nullable=False, unique=True),
        Column("payload", LargeBinary, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
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
    ) -> None:
        self._sessions = sessions
        self._table = table
        self._js = js
        self._batch_size = batch_size
        self._poll_seconds = poll_seconds
        self._publish_timeout = publish_timeout
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
        table = self._table
        async with self._sessions() as session, session.begin():
            # SKIP LOCKED lets several replicas relay side by side without publishing a row twice.
            rows = (
                await session.execute(
                    select(table.c.id, table.c.subject, table.c.msg_id, table.c.payload)
                    .order_by(table.c.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            for row in rows:
                await self._js.publish(
                    row.subject, row.payload, headers={"Nats-Msg-Id": row.msg_id}, timeout=self._publish_timeout
                )
            if rows:
                await session.execute(delete(table).where(table.c.id.in_([row.id for row in rows])))
            return len(rows)
