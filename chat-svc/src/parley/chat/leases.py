"""Turn leases: a turn whose replica died is found and settled within a bounded time.

The replica running a turn renews its lease (`turns.lease_expires_at`) every
`turn_heartbeat_seconds` for `turn_lease_seconds`. Every replica looks, every
`turn_sweep_seconds`, for running turns whose lease ran out (leaving its own alone) and settles
each in one transaction:
- the turn is `interrupted`;
- its usage event charges what the provider reported, when the runner had written that down
  (`turns.reported_usage`, the moment the provider said it); else the whole hold (`billed_at_hold`:
  the conservative bill — the true usage died with the replica, and the hold is the most the call
  could cost). Either releases the hold;
- an `error` event (`interrupted`) numbered after the turn's last published event goes to the
  outbox, so every client of the turn is told, even if this replica dies next.
A turn whose replica died before recording its hold on it (or whose Reserve failed with usage-svc
unreachable, so a hold may exist: clients.HoldUncertain) never called a model: it is `failed`, its
clients told, nothing billed, the hold (if it was placed) released by the turn's key, and a
conversation created for it alone, holding nothing, is removed.
Which turns lapsed is read across tenants (the login role, outside row-level security); each is
then locked and settled in a transaction given to its tenant (store.enter_tenant).
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
from parley.chat.clients import Budget
from parley.chat.config import Settings
from parley.chat.metering import usage_event
from parley.chat.turn_stream import TURN_STREAM_NAME
from parley.kit.contracts import USAGE_CHAT, turn_event_msg_id, turn_subject
from parley.kit.db import Sessions
from parley.kit.errors import BudgetExceeded
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted"
INTERRUPTED_MESSAGE = (
    "the server running this answer stopped before it finished; it is billed at its budget hold "
    "(the most it could have cost), and the conversation keeps no answer for it: ask again"
)


def hold_key(turn_id: str) -> str:
    """The idempotency key of a turn's budget hold: the sweep finds a hold placed by a replica that
    died before it could record it."""
    return f"turn:{turn_id}"


NEVER_BEGAN_MESSAGE = "the server taking this question stopped before the answer began; nothing was billed: ask again"


class TurnLeases:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: Sessions,
        js: JetStreamContext,
        relay: OutboxRelay,
        budget: Budget,
        running: Callable[[], Sequence[str]],
    ) -> None:
        self._settings = settings
        self._budget = budget
        self._sessions = sessions
        self._js = js
        self._relay = relay
        self._running = running  # the turns this replica runs

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self._settings.turn_lease_seconds)

    async def renew(self) -> None:
        # Across tenants (this replica runs any tenant's turns): the login role, outside row-level
        # security; it moves nothing but the leases of the turns this replica runs.
        async with self._sessions.begin() as session:
            await store.renew_leases(session=session, turn_ids=self._running(), lease=self.lease)

    async def settle_lapsed(self, *, turn_id: str | None = None) -> list[str]:
        """Settle the running turns whose lease ran out (or only `turn_id`, if its did); their ids.
        A turn without a recorded hold is settled only once its hold (if any) is released: while
        usage-svc cannot answer it stays for the next sweep. Which turns lapsed is looked up across
        tenants (the login role); each is then locked and settled in a transaction of its own,
        given to its tenant (row-level security), so a failure leaves the others settled."""
        async with self._sessions() as session:
            keys = await store.lapsed_turn_keys(session=session, spare=self._running(), turn_id=turn_id)
        settled: list[str] = []
        try:
            for key in keys:
                if await self._settle_lapsed(key):
                    settled.append(key.turn_id)
        finally:
            if settled:
                self._relay.notify()
                for _ in settled:
                    metrics.turns.labels(INTERRUPTED).inc()
                log.warning("settled turns whose replica died, at their holds", extra={"fields": {"turns": settled}})
        return settled

    async def _settle_lapsed(self, key: store.LapsedKey) -> bool:
        """Lock and settle one lapsed turn in its tenant's transaction; False when another replica
        has it (or settled it meanwhile), or its unrecorded hold could not be released yet."""
        async with self._sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=key.tenant_id)
            lapsed = await store.lapsed_turns(session=session, spare=self._running(), turn_id=key.turn_id)
            settled = [turn for turn in lapsed if turn.reservation_id or await self._release_unrecorded_hold(turn)]
            await store.end_lapsed_turns(session=session, lapsed=settled)
            for turn in settled:
                await self._settle(session, turn)
            never_began = [turn.conversation_id for turn in settled if not turn.reservation_id]
            await store.drop_conversations_left_empty(session=session, conversation_ids=never_began)
        return bool(settled)

    async def _release_unrecorded_hold(self, turn: store.LapsedTurn) -> bool:
        """The turn's hold was never recorded on it, so no model was called: release the hold, if
        it was placed (Reserve with the turn's key answers that hold, or places one of nothing, and
        Settle releases it). False when usage-svc could not be asked."""
        identity = Identity(tenant_id=turn.tenant_id, user_id=turn.user_id, request_id="")
        try:
            hold = await self._budget.reserve(
                identity,
                provider=turn.provider,
                model=turn.model,
                input_tokens=0,
                max_output_tokens=0,
                idempotency_key=hold_key(turn.id),
            )
            await self._budget.release(identity, hold.reservation_id)
        except BudgetExceeded:
            return True  # no hold was placed (a hold of nothing is refused only past the limit)
        except Exception:
            log.exception("could not release the hold of a turn that never began", extra={"fields": {"turn": turn.id}})
            return False
        return True

    async def _settle(self, session: AsyncSession, turn: store.LapsedTurn) -> None:
        subject = turn_subject(turn.conversation_id, turn.id)
        seq = await self._last_seq(subject) + 1
        if turn.reservation_id:
            await self._bill(session, turn)
            message = INTERRUPTED_MESSAGE
        else:  # it never called a model: nothing to bill
            message = NEVER_BEGAN_MESSAGE
        event = events_pb2.TurnEvent(
            conversation_id=turn.conversation_id,
            turn_id=turn.id,
            seq=seq,
            error=events_pb2.TurnError(code=INTERRUPTED, message=message),
        )
        await store.enqueue_turn_event(
            session=session, subject=subject, msg_id=turn_event_msg_id(turn.id, seq), event=event
        )

    async def _bill(self, session: AsyncSession, turn: store.LapsedTurn) -> None:
        """The usage event of a lapsed turn that held a budget; it releases the hold."""
        identity = Identity(tenant_id=turn.tenant_id, user_id=turn.user_id, request_id="")
        reported = turn.reported
        await store.record_usage(
            session=session,
            usage_event=usage_event(
                identity,
                kind=USAGE_CHAT,
                # What the provider reported, when it had; else the hold, the most it could cost.
                usage=reported.usage if reported else common_pb2.TokenUsage(),
                provider=reported.provider if reported else turn.provider,
                model=reported.model if reported else turn.model,
                reservation_id=turn.reservation_id,
                conversation_id=turn.conversation_id,
                latency_ms=0,
                success=False,
                billed_at_hold=reported is None,
            ),
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
