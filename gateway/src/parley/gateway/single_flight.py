"""Concurrent calls that would ask the database the same thing, asked once.

`Coalescer.call(key, run)`: calls with one key that arrive while that key's previous batch is in
flight wait for it to finish and then go as the next batch, together: `run(n)` is called once
with how many calls the batch holds and answers one result per call, in arrival order. At most
one batch per key is in flight and at most one is forming behind it, so a burst of N calls costs
two or three queries, not N — and a batch always starts after every call in it arrived, so no
call is answered from a query that began before it: the answer is as fresh as a query of its own
(a key revoked before a request arrives refuses that request, on every replica).

A caller that goes away (its client disconnected) leaves its batch running for the others.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class _Batch(Generic[R]):
    def __init__(self) -> None:
        self.size = 0
        self.task: asyncio.Task[Sequence[R]] | None = None


class Coalescer(Generic[K, R]):
    def __init__(self) -> None:
        self._forming: dict[K, _Batch[R]] = {}
        # The newest batch of each key (forming or in flight): the next one starts after it.
        self._newest: dict[K, asyncio.Task[Sequence[R]]] = {}

    async def call(self, key: K, run: Callable[[int], Awaitable[Sequence[R]]]) -> R:
        batch = self._forming.get(key)
        if batch is None:
            batch = self._forming[key] = _Batch()
            batch.task = asyncio.create_task(self._run(key, batch, self._newest.get(key), run))
            self._newest[key] = batch.task
        place = batch.size
        batch.size += 1
        assert batch.task is not None
        # Shielded: one caller's cancellation must not cancel the batch for the rest.
        results = await asyncio.shield(batch.task)
        return results[place]

    async def _run(
        self,
        key: K,
        batch: _Batch[R],
        previous: "asyncio.Task[Sequence[R]] | None",
        run: Callable[[int], Awaitable[Sequence[R]]],
    ) -> Sequence[R]:
        try:
            if previous is not None:
                await asyncio.wait({previous})  # its outcome is its own callers'
            del self._forming[key]  # from here on, new calls form the next batch
            results = await run(batch.size)
            if len(results) != batch.size:
                raise RuntimeError(f"a batch of {batch.size} calls was answered {len(results)} results")
            return results
        finally:
            if self._forming.get(key) is batch:  # cancelled before it started
                del self._forming[key]
            if self._newest.get(key) is asyncio.current_task():
                del self._newest[key]
