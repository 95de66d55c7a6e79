"""Exact BM25 over a collection's postings held in memory: the keyword leg's fast path.

Why: PostgreSQL's postings answer a keyword search in one statement, but at 100k chunks exact
BM25 there reads every posting of the query's terms (354 ms p50 for Cranfield's long queries),
and reading only each term's best postings is fast but approximate (bm25.py). The same postings
as arrays in memory give exact BM25 in a few milliseconds (BENCHMARKS.md, "Retrieval").

How it stays exactly as true as PostgreSQL, which stays the one source:
- Every write of a collection's postings moves the collection to its next `generation` and notes
  the document as changed at it, in the chunks' own transaction (store._forget_postings).
- A replica holds, per collection, a copy of the postings as of one generation. A search reads
  the chosen collections' current generations in the statement that analyses its query; a copy
  behind first reads the documents changed since (one snapshot: the generation, the documents,
  their postings now) and applies them. So a search sees every document committed before it
  started, on every replica, as the SQL leg would.
- A copy is loaded whole on its first search: at once for a small collection; for a large one
  in the background, while searches take the SQL leg. At start the largest collections are
  loaded in the background (`warm`).
- A changed document's chunks leave dead slots (skipped, not counted in N, df or avgdl) and its
  new postings wait in per-term lists merged on a term's next search; past a share of either, the
  copy is loaded again in the background, caught up and swapped in.
- Memory is bounded (settings `bm25_memory_postings`): the least recently searched copies go
  first; a collection larger than the whole budget always takes the SQL leg.
- Statistics are the copy's own (N, avgdl, df over the chosen collections together), the same
  figures PostgreSQL keeps, so scores match the SQL leg's exact ones.

Filters on chunk columns (heading, scene, characters, pages) take the SQL leg: the postings carry
none of them. A document filter is applied here.
"""

import asyncio
import logging
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sqlalchemy.ext.asyncio import AsyncSession

from parley.kit.db import Sessions
from parley.retrieval import store
from parley.retrieval.bm25 import Bm25Parameters
from parley.retrieval.store import PostingsChanges, PostingsCollection, Ranked, SearchScope

log = logging.getLogger(__name__)

Slots = npt.NDArray[np.int32]
Counts = npt.NDArray[np.int32]
Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

# A copy is loaded again (compacted) once dead slots or unmerged postings pass this share of it.
RELOAD_SHARE = 0.25
# ... but not before it holds this many postings: small copies are cheap to keep as they are.
RELOAD_MIN_POSTINGS = 100_000
# A copy further behind than this many changed documents is loaded again rather than caught up.
MAX_CATCH_UP_DOCUMENTS = 500
# Warming at start stops once this share of the budget is held (the rest is for first searches).
WARM_SHARE = 0.8


def _slots_and_tfs(pairs: bytes) -> tuple[Slots, Counts]:
    """Big-endian int4 pairs (slot, tf); ordinality counts from 1."""
    columns = np.frombuffer(pairs, dtype=">i4").reshape(-1, 2).astype(np.int32)
    return np.ascontiguousarray(columns[:, 0] - 1), np.ascontiguousarray(columns[:, 1])


@dataclass(slots=True)
class _Term:
    """One term's postings in a copy: merged arrays, and postings added since, not merged yet."""

    slots: Slots
    tfs: Counts
    added_slots: list[int]
    added_tfs: list[int]

    def merged(self) -> tuple[Slots, Counts]:
        """The term's postings, the added ones merged in."""
        if self.added_slots:
            self.slots = np.concatenate([self.slots, np.asarray(self.added_slots, dtype=np.int32)])
            self.tfs = np.concatenate([self.tfs, np.asarray(self.added_tfs, dtype=np.int32)])
            self.added_slots, self.added_tfs = [], []
        return self.slots, self.tfs


@dataclass(frozen=True, slots=True)
class _Part:
    """What one search reads of one copy; never changed once made, so it can be scored off the
    event loop while the copy moves on. `alive` and `eligible` are None when every slot is."""

    chunk_ids: Sequence[str]
    lengths: Floats
    alive: Mask | None
    eligible: Mask | None
    postings: dict[str, tuple[Slots, Counts]]

    def df(self, term: str) -> int:
        postings = self.postings.get(term)
        if postings is None:
            return 0
        return len(postings[0]) if self.alive is None else int(np.count_nonzero(self.alive[postings[0]]))


class CollectionCopy:
    """One collection's postings in memory as of `generation`. Changed only on the event loop."""

    def __init__(self, postings: store.CollectionPostings) -> None:
        self.generation = postings.generation
        size = len(postings.chunks)
        self._chunk_ids = [chunk.chunk_id for chunk in postings.chunks]
        self._lengths = np.zeros(max(size, 16), dtype=np.float64)
        self._lengths[:size] = [chunk.length for chunk in postings.chunks]
        self._alive = np.zeros(len(self._lengths), dtype=np.bool_)
        self._alive[:size] = True
        self._document_slots: dict[str, list[int]] = {}
        for slot, chunk in enumerate(postings.chunks):
            self._document_slots.setdefault(chunk.document_id, []).append(slot)
        self._terms = {
            term.term: _Term(*_slots_and_tfs(term.pairs), added_slots=[], added_tfs=[]) for term in postings.terms
        }
        self.postings = sum(len(term.slots) for term in self._terms.values())
        self.chunk_count = size
        self.total_length = float(self._lengths[:size].sum())
        self._unmerged = 0

    def apply(self, changes: PostingsChanges) -> None:
        """Replace the changed documents' postings with theirs now."""
        for document_id in changes.document_ids:
            for slot in self._document_slots.pop(document_id, []):
                self._alive[slot] = False
                self.chunk_count -= 1
                self.total_length -= float(self._lengths[slot])
        new_slots: dict[str, int] = {}
        for posting in changes.postings:
            if posting.chunk.chunk_id not in new_slots:
                new_slots[posting.chunk.chunk_id] = self._new_slot(posting.chunk)
            slot = new_slots[posting.chunk.chunk_id]
            term = self._terms.get(posting.term)
            if term is None:
                term = self._terms[posting.term] = _Term(
                    slots=np.empty(0, dtype=np.int32), tfs=np.empty(0, dtype=np.int32), added_slots=[], added_tfs=[]
                )
            term.added_slots.append(slot)
            term.added_tfs.append(posting.tf)
        self.postings += len(changes.postings)
        self._unmerged += len(changes.postings)
        self.generation = max(self.generation, changes.generation)

    def _new_slot(self, chunk: store.PostingsChunk) -> int:
        slot = len(self._chunk_ids)
        if slot == len(self._lengths):
            # Grown by doubling; a search's part keeps the arrays it was given.
            self._lengths = np.concatenate([self._lengths, np.zeros(slot, dtype=np.float64)])
            self._alive = np.concatenate([self._alive, np.zeros(slot, dtype=np.bool_)])
        self._chunk_ids.append(chunk.chunk_id)
        self._lengths[slot] = chunk.length
        self._alive[slot] = True
        self._document_slots.setdefault(chunk.document_id, []).append(slot)
        self.chunk_count += 1
        self.total_length += chunk.length
        return slot

    @property
    def worn(self) -> bool:
        """Whether so much is dead or unmerged that loading it again is worth it."""
        dead_slots = len(self._chunk_ids) - self.chunk_count
        if self.postings < RELOAD_MIN_POSTINGS:
            return False
        return dead_slots > RELOAD_SHARE * len(self._chunk_ids) or self._unmerged > RELOAD_SHARE * self.postings

    def part(self, terms: Sequence[str], document_ids: Sequence[str]) -> _Part:
        postings: dict[str, tuple[Slots, Counts]] = {}
        for name in terms:
            term = self._terms.get(name)
            if term is not None:
                self._unmerged -= len(term.added_slots)
                postings[name] = term.merged()
        size = len(self._chunk_ids)
        alive = None if self.chunk_count == size else self._alive[:size].copy()
        eligible = alive
        if document_ids:
            eligible = np.zeros(size, dtype=np.bool_)
            for document_id in document_ids:
                eligible[self._document_slots.get(document_id, [])] = True
        return _Part(
            chunk_ids=self._chunk_ids, lengths=self._lengths[:size], alive=alive, eligible=eligible, postings=postings
        )


def best_chunks(
    parts: Sequence[_Part],
    *,
    terms: Sequence[str],
    chunk_count: int,
    total_length: float,
    bm25: Bm25Parameters,
    limit: int,
) -> list[tuple[str, float]]:
    """The `limit` best (chunk id, BM25 score) of the parts together, best first, ties by chunk id:
    N, avgdl and df are over all their live chunks, whatever the parts' eligible chunks."""
    if not chunk_count:
        return []
    n, avgdl = float(chunk_count), total_length / chunk_count
    idf: dict[str, float] = {}
    for term in terms:
        df = sum(part.df(term) for part in parts)
        if df:
            idf[term] = math.log(1 + (n - df + 0.5) / (df + 0.5))
    found: list[tuple[str, float]] = []
    for part in parts:
        norms = bm25.k1 * (1 - bm25.b + bm25.b * part.lengths / avgdl)
        scores = np.zeros(len(part.lengths), dtype=np.float64)
        for term, weight in idf.items():
            postings = part.postings.get(term)
            if postings is None:
                continue
            slots, counts = postings
            if part.eligible is not None:
                live = part.eligible[slots]
                slots, counts = slots[live], counts[live]
            tf = counts.astype(np.float64)
            # A term's slots are distinct, so the fancy-indexed += adds once per posting.
            scores[slots] += weight * (bm25.k1 + 1) * tf / (tf + norms[slots])
        matched = np.flatnonzero(scores)
        if len(matched) > limit:
            cut = np.partition(scores[matched], -limit)[-limit]
            matched = matched[scores[matched] >= cut]
        found.extend((part.chunk_ids[int(slot)], float(scores[slot])) for slot in matched)
    found.sort(key=lambda hit: (-hit[1], hit[0]))
    return found[:limit]


class KeywordIndex:
    """Copies of collections' postings, kept current, searched with exact BM25 (see above)."""

    def __init__(self, *, sessions: Sessions, max_postings: int, load_inline_chunks: int) -> None:
        self._sessions = sessions
        self._max_postings = max_postings
        self._load_inline_chunks = load_inline_chunks
        # Least recently searched first.
        self._copies: OrderedDict[int, CollectionCopy] = OrderedDict()
        self._locks: dict[int, asyncio.Lock] = {}
        self._loading: dict[int, asyncio.Task[None]] = {}
        # Collections found larger than the whole budget, with their chunk count then.
        self._too_big: dict[int, int] = {}

    async def search(
        self, *, session: AsyncSession, scope: SearchScope, text: str, bm25: Bm25Parameters
    ) -> list[Ranked] | None:
        """The scope's best chunks for the query by exact BM25, or None when a collection has no
        copy ready (the caller takes the SQL leg). `session` is in the search's transaction, the
        tenant entered."""
        if not self._max_postings or scope.filters.narrows_chunks:
            return None
        query = await store.keyword_query(
            session=session, tenant_id=scope.tenant_id, collection_ids=scope.collection_ids, query=text
        )
        if not query.terms or not query.collections:
            return []
        copies = []
        for collection in query.collections:
            copy = await self._current(tenant_id=scope.tenant_id, collection=collection)
            if copy is None:
                return None
            copies.append(copy)
        parts = [copy.part(query.terms, scope.filters.document_ids) for copy in copies]
        best = await asyncio.to_thread(
            best_chunks,
            parts,
            terms=query.terms,
            chunk_count=sum(copy.chunk_count for copy in copies),
            total_length=sum(copy.total_length for copy in copies),
            bm25=bm25,
            limit=scope.limit,
        )
        return [Ranked(chunk_id=chunk_id, score=score) for chunk_id, score in best]

    async def warm(self, stopping: asyncio.Event) -> None:
        """Load the largest collections' copies while the budget lasts, so that their first
        searches do not take the SQL leg. Run at start."""
        if not self._max_postings:
            return
        async with self._sessions() as session:
            collections = await store.postings_collections(session=session)
        for tenant_id, collection in collections:
            # The smaller ones load on their first search, at once.
            if stopping.is_set() or collection.chunk_count <= self._load_inline_chunks:
                return
            await self._reload(tenant_id=tenant_id, collection_key=collection.collection_key)
            if self._held() > WARM_SHARE * self._max_postings:
                return

    async def close(self) -> None:
        for task in list(self._loading.values()):
            task.cancel()
        await asyncio.gather(*self._loading.values(), return_exceptions=True)

    async def _current(self, *, tenant_id: str, collection: PostingsCollection) -> CollectionCopy | None:
        key = collection.collection_key
        copy = self._copies.get(key)
        if copy is None or copy.generation < collection.generation:
            async with self._locks.setdefault(key, asyncio.Lock()):
                copy = await self._caught_up(tenant_id=tenant_id, collection=collection)
        if copy is None:
            return None
        self._copies.move_to_end(key)
        if copy.worn:
            self._reload_later(tenant_id=tenant_id, collection=collection)
        return copy

    async def _caught_up(self, *, tenant_id: str, collection: PostingsCollection) -> CollectionCopy | None:
        """The collection's copy at `collection.generation` or later; None when none is ready."""
        key = collection.collection_key
        copy = self._copies.get(key)
        if copy is None:
            if collection.chunk_count > self._load_inline_chunks or key in self._too_big:
                self._reload_later(tenant_id=tenant_id, collection=collection)
                return None
            return self._keep(key, await self._read(tenant_id=tenant_id, collection_key=key))
        if copy.generation >= collection.generation:
            return copy
        async with self._sessions() as session, session.begin():
            await store.begin_snapshot(session)
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            changes = await store.postings_changes(
                session=session, collection_key=key, after=copy.generation, max_documents=MAX_CATCH_UP_DOCUMENTS
            )
        if changes is None:
            # Gone, or so far behind that loading it again is cheaper.
            del self._copies[key]
            self._reload_later(tenant_id=tenant_id, collection=collection)
            return None
        copy.apply(changes)
        return copy

    async def _read(self, *, tenant_id: str, collection_key: int) -> CollectionCopy | None:
        async with self._sessions() as session, session.begin():
            await store.begin_snapshot(session)
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            postings = await store.collection_postings(session=session, collection_key=collection_key)
        if postings is None:
            return None
        return await asyncio.to_thread(CollectionCopy, postings)

    def _keep(self, key: int, copy: CollectionCopy | None) -> CollectionCopy | None:
        """Hold `copy` as the collection's, making room by dropping the least recently searched."""
        if copy is None:
            self._copies.pop(key, None)
            return None
        if copy.postings > self._max_postings:
            self._copies.pop(key, None)
            self._too_big[key] = copy.chunk_count
            log.info(
                "a collection's postings exceed the in-memory budget: its keyword searches read PostgreSQL",
                extra={"fields": {"collection_key": key, "postings": copy.postings}},
            )
            return None
        self._too_big.pop(key, None)
        self._copies[key] = copy
        self._copies.move_to_end(key)
        while self._held() > self._max_postings:
            del self._copies[next(iter(self._copies))]
        return copy

    def _held(self) -> int:
        return sum(copy.postings for copy in self._copies.values())

    def _reload_later(self, *, tenant_id: str, collection: PostingsCollection) -> None:
        key = collection.collection_key
        too_big_at = self._too_big.get(key)
        # Too big stays too big until the collection has shrunk by half.
        if key in self._loading or (too_big_at is not None and collection.chunk_count > too_big_at // 2):
            return
        task = asyncio.create_task(self._reload(tenant_id=tenant_id, collection_key=key))
        self._loading[key] = task
        task.add_done_callback(lambda _: self._loading.pop(key, None))

    async def _reload(self, *, tenant_id: str, collection_key: int) -> None:
        """Load a fresh copy and swap it in. Searches go on with the old copy meanwhile; the fresh
        one catches up on its first search."""
        try:
            fresh = await self._read(tenant_id=tenant_id, collection_key=collection_key)
        except Exception:
            log.exception(
                "loading a collection's postings failed", extra={"fields": {"collection_key": collection_key}}
            )
            return
        async with self._locks.setdefault(collection_key, asyncio.Lock()):
            kept = self._keep(collection_key, fresh)
        if kept is not None:
            log.info(
                "loaded a collection's postings into memory",
                extra={
                    "fields": {"collection_key": collection_key, "chunks": kept.chunk_count, "postings": kept.postings}
                },
            )
