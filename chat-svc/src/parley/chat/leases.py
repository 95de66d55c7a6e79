"""Turn leases: a turn whose replica died is found and settled within a bounded time.

The replica running a turn renews its lease (`turns.lease_expires_at`) every
`turn_heartbeat_seconds` for `turn_lease_seconds`. Every replica looks, every
`turn_sweep_seconds`, for running turns whose lease ran out (leaving its own alone) and settles
each in one transaction:
- the turn is `interrupted`;
- its usage event charges the whole hold (`billed_at_hold`: the conservative bill — the true usage
  died with the replica, and the hold is the most the call could cost), which also releases it;
- an `error` event (`interrupted`) numbered after the turn's last published event goes to the
  outbox, so every client of the turn is told, even if this replica dies next.
`FOR UPDATE SKIP LOCKED` keeps two replicas from settling one turn; the runner's own last
transaction only ends a turn still `running` (store.end_turn), so a turn settled here is never
billed a second time by a replica that was only slow.

Bound: a dead replica's turns are settled within lease + sweep interval of its last renewal.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from datetime import timedelta

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.chat import metrics, store
from parley.chat.config import Settings
from parley.chat.metering import usage_event
from parley.chat.turn_stream import TURN_STREAM_NAME
from parley.kit.contracts import turn_event_msg_id, turn_subject
from parley.kit.db import Sessions
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"
INTERRUPTED_MESSAGE = (
    "the server running this answer stopped before it finished; it is billed at its budget hold "
    "(the most it could have cost), and the conversation keeps no answer for it: ask again"
)


class TurnLeases:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: Sessions,
        js: JetStreamContext,
        relay: OutboxRelay,
        running: Callable[[], Sequence[str]],
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._js = js
        self._relay = relay
        self._running = running  # the turns this replica runs

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self._settings.turn_lease_seconds)

    async def renew(self) -> None:
        async with self._sessions.begin() as session:
            await store.renew_leases(session=session, turn_ids=self._running(), lease=self.lease)

    async def settle_lapsed(self, *, turn_id: str | None = None) -> list[str]:
        """Settle the running turns whose lease ran out (or only `turn_id`, if its did); their ids."""
        async with self._sessions.begin() as session:
            lapsed = await store.interrupt_lapsed_turns(session=session, spare=self._running(), turn_id=turn_id)
            for turn in lapsed:
                await self._settle(session, turn)
        if lapsed:
            self._relay.notify()
            for _ in lapsed:
                metrics.turns.labels(INTERRUPTED).inc()
            log.warning(
                "settled turns whose replica died, at their holds",
                extra={"fields": {"turns": [turn.id for turn in lapsed]}},
            )
        return [turn.id for turn in lapsed]

    async def _settle(self, session: AsyncSession, turn: store.LapsedTurn) -> None:
        identity = Identity(tenant_id=turn.tenant_id, user_id=turn.user_id, request_id="")
        await store.record_usage(
            session=session,
            usage_event=usage_event(
                identity,
                kind="chat",
                usage=common_pb2.TokenUsage(),
                provider=turn.provider,
                model=turn.model,
                reservation_id=turn.reservation_id,
                conversation_id=turn.conversation_id,
                latency_ms=0,
                success=False,
                billed_at_hold=True,
            ),
        )
        subject = turn_subject(turn.conversation_id, turn.id)
        seq = await self._last_seq(subject) + 1
        event = events_pb2.TurnEvent(
            conversation_id=turn.conversation_id,
            turn_id=turn.id,
            seq=seq,
            error=events_pb2.TurnError(code=INTERRUPTED, message=INTERRUPTED_MESSAGE),
        )
        await store.enqueue_turn_event(
            session=session, subject=subject, msg_id=turn_event_msg_id(turn.id, seq), event=event
        )

    async def _last_seq(self, subject: str) -> int:
        """The number of the turn's last published event; 0 when none is kept (or NATS lost them).
        Any other failure aborts the settling: the next sweep tries again."""
        try:
            last = await self._js.get_last_msg(TURN_STREAM_NAME, subject)
        except NotFoundError:
            return 0
        return events_pb2.TurnEvent.FromString(last.data or b"").seq

    async def run(self, stop: asyncio.Event) -> None:
        """Renew this replica's leases every heartbeat and settle lapsed turns every sweep, until `stop`."""
        loop = asyncio.get_running_loop()
        next_sweep = loop.time()  # at start too: a replica that restarts settles what it left
        while not stop.is_set():
            try:
                await self.renew()
            except Exception:  # the next heartbeat tries again, well inside the lease
                log.exception("could not renew the leases of running turns")
            if loop.time() >= next_sweep:
                next_sweep = loop.time() + self._settings.turn_sweep_seconds
                try:
                    await self.settle_lapsed()
                except Exception:
                    log.exception("could not settle the turns of a replica that died")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=self._settings.turn_heartbeat_seconds)
