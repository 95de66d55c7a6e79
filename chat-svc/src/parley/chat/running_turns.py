"""The turns this process runs: to cancel one, to keep their leases, to drain them at shutdown."""

import asyncio
from dataclasses import dataclass

from parley.chat import store


@dataclass(slots=True)
class _Running:
    owner: store.Owner
    conversation_id: str
    task: asyncio.Task[None]
    finishing: bool = False


class RunningTurns:
    """The turns this process runs, each with its owner. A turn whose answer is whole (it is
    being stored) is past cancelling."""

    def __init__(self) -> None:
        self._turns: dict[str, _Running] = {}
        self._starting: set[str] = set()  # written, their hold being placed: leased, not yet running

    def starting(self, turn_id: str) -> None:
        self._starting.add(turn_id)

    def started(self, turn_id: str) -> None:
        self._starting.discard(turn_id)

    def add(self, turn_id: str, *, owner: store.Owner, conversation_id: str, task: asyncio.Task[None]) -> None:
        self._turns[turn_id] = _Running(owner, conversation_id, task)
        task.add_done_callback(lambda _: self._turns.pop(turn_id, None))

    def finishing(self, turn_id: str) -> None:
        self._turns[turn_id].finishing = True

    def ids(self) -> list[str]:
        """The turns whose leases this process keeps: running, or starting."""
        return [*self._turns, *self._starting]

    def cancel(self, owner: store.Owner, conversation_id: str, turn_id: str) -> bool:
        """Cancel the caller's own turn; another owner's turn, or one elsewhere, is not found."""
        running = self._turns.get(turn_id)
        if running is None or running.owner != owner or running.conversation_id != conversation_id:
            return False
        if not running.finishing:
            running.task.cancel()
        return True

    async def drain(self, grace_seconds: float) -> None:
        """At shutdown (no new turns by now): let turns finish, then cancel what is left, while
        the database and NATS are still there to record and report it."""
        if self._turns:
            await asyncio.wait([running.task for running in self._turns.values()], timeout=grace_seconds)
        leftovers = list(self._turns.values())
        for running in leftovers:
            if not running.finishing:
                running.task.cancel()
        if leftovers:
            await asyncio.wait([running.task for running in leftovers], timeout=5)
