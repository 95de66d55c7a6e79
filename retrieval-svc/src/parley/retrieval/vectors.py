"""The index's vectors, per model: which model a search is served from, which models a new chunk
is embedded with, re-embedding after a switch of model, the embedding cache, and the bill.

Vectors are stored per model (`models.chunk_embeddings`). The configured embedder's vectors are
made for every chunk; after a switch of model (`PARLEY_EMBEDDING_PROVIDER` and friends) the
chunks indexed before it have only the previous model's, and `reembed_until_current` makes the
new ones in the background. Meanwhile a search is answered from the *serving model* of the
collections it searches: the configured model when every chunk of them has its vector, else a
previous model that does (its embedder is rebuilt from the name its vectors carry and embeds the
query), so a collection half re-embedded still answers from all of its chunks. New chunks get
the previous models' vectors too until the switch is done, or a collection could end up whole in
neither. When no chunk is left without the configured model's vector the switch is done: search
stops checking, and the other models' vectors are deleted (the embedding cache keeps every vector
ever made, so switching back re-embeds nothing it has seen).

Every embedding goes through the cache, keyed by (model name, SHA-256 of the exact text): the
same text is never embedded twice by one model, whichever document, version, re-embed or query
it comes from. Every call that reaches a model is billed to the tenant whose text it embedded: a
`UsageRecorded` of kind `embedding` (provider, model, input tokens, latency, success) goes to the
outbox in the transaction that caches the vectors, so a paid embedding is never lost or billed
twice. Cache hits cost nothing and are not billed; local models are billed at nothing by
usage-svc, and still recorded so a tenant sees the tokens.
"""

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from parley.kit import outbox
from parley.kit.contracts import LOCAL_PROVIDER, USAGE_EMBEDDING, USAGE_RECORDED
from parley.kit.db import Sessions
from parley.kit.identity import Identity
from parley.retrieval import store
from parley.retrieval.embeddings import Embedder, is_zero
from parley.retrieval.models import outbox as outbox_table
from parley.retrieval.store import StaleChunk
from parley.v1 import common_pb2, events_pb2

log = logging.getLogger(__name__)

REEMBED_BATCH = 32
FORGET_BATCH = 1_000
RETRY_SECONDS = 30.0
# Query vectors of local models kept in process for a query asked again (~9 KB each).
RECENT_QUERIES = 1_000

embeddings_made = Counter("parley_retrieval_embeddings_total", "Embeddings needed, by where they came from", ["source"])


@dataclass(frozen=True, slots=True)
class QueryVector:
    """A query embedded by the model whose vectors it is to be compared with."""

    model: str
    dimensions: int
    embedding: list[float]


def embedding_input(heading: str, text: str) -> str:
    """What is embedded, and analysed for BM25, for a chunk: its heading carries meaning the text
    often leaves implicit."""
    return f"{heading}\n{text}" if heading else text


def embedding_key(content: str) -> str:
    # Our own hash of exactly what is embedded, not the producer's content_hash: the cache must not
    # depend on how another service defines "the same content".
    return hashlib.sha256(content.encode()).hexdigest()


def stored(vector: list[float]) -> list[float] | None:
    # A zero vector has no direction: stored as no embedding at all (see models.chunk_embeddings).
    return None if is_zero(vector) else vector


class Vectors:
    """The embedders (configured and previous), the cache, the serving model and the bill; shared
    by the Indexer (what to embed new chunks with) and the Searcher (what to embed a query with)."""

    def __init__(
        self,
        *,
        sessions: Sessions,
        engine: AsyncEngine,
        embedder: Embedder,
        others: Callable[[str], Embedder | None] = lambda name: None,
        retry_seconds: float = RETRY_SECONDS,
    ) -> None:
        """`others` rebuilds the embedder of stored vectors of another model from their name
        (embedder_registry.embedder_named), or None when it cannot."""
        self._sessions = sessions
        self._engine = engine
        self._embedder = embedder
        self._others = others
        self._retry_seconds = retry_seconds
        self._previous: list[Embedder] = []
        # True once every chunk has a vector of the configured model: no search needs another.
        self._switched = False
        # Recent queries' vectors from local models, by (model, content hash), least recent first.
        self._recent_queries: OrderedDict[tuple[str, str], list[float]] = OrderedDict()
        # Free query embeddings being billed after their search answered.
        self._recording: set[asyncio.Task[None]] = set()

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    async def start(self) -> None:
        """Load the embedders of the other models that have vectors (a switch in progress), and
        every model, off the event loop, before the first search needs one."""
        async with self._sessions() as session:
            names = await store.stored_models(session=session)
        for name in names:
            if name == self._embedder.name:
                continue
            other = self._others(name)
            if other is None:
                log.warning(
                    "cannot embed queries for stored vectors; search uses the configured model's alone",
                    extra={"fields": {"model": name}},
                )
                continue
            self._previous.append(other)
        for embedder in self.writing():
            await embedder.warm_up()

    async def close(self) -> None:
        await asyncio.gather(*self._recording, return_exceptions=True)
        for embedder in (self._embedder, *self._previous):
            await embedder.close()

    def writing(self) -> list[Embedder]:
        """The models a new chunk is embedded with: the configured one, and until the switch is
        done the previous ones, so that the collections they serve stay whole."""
        return [self._embedder] if self._switched else [self._embedder, *self._previous]

    async def ensure_indexes(self) -> None:
        """Each loaded model's HNSW index, built (concurrently) if it is missing. Background work:
        until an index is there, its model's searches are exact scans, slower but complete."""
        for embedder in self.writing():
            try:
                async with self._engine.connect() as connection:
                    autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
                    await store.ensure_vector_index(
                        connection=autocommit, model=embedder.name, dimensions=embedder.dimensions
                    )
            except DBAPIError:
                log.exception("could not build a vector index", extra={"fields": {"model": embedder.name}})

    async def serving(self, *, tenant_id: str, collection_ids: Sequence[str]) -> Embedder:
        """The model a search of these collections is answered from: the configured one when it
        has a vector for every chunk of them, else a previous model that has."""
        if self._switched or not self._previous:
            return self._embedder
        candidates = [self._embedder, *self._previous]
        async with self._sessions() as session, session.begin():
            await store.enter_tenant(session=session, tenant_id=tenant_id)
            covering = await store.models_covering(
                session=session,
                tenant_id=tenant_id,
                collection_ids=collection_ids,
                models=[candidate.name for candidate in candidates],
            )
        # None covers them (e.g. a previous model that cannot be rebuilt): the configured model's
        # vectors are the most there will be.
        return next((candidate for candidate in candidates if candidate.name in covering), self._embedder)

    @contextlib.asynccontextmanager
    async def for_query(
        self, *, tenant_id: str, collection_ids: Sequence[str], text: str, billed_to: Identity | None = None
    ) -> AsyncIterator[QueryVector]:
        """The query's vector, from the serving model of the collections searched, for the time of
        one search. A model call that costs money is recorded (its vector cached, the call billed)
        while the search goes on, and done before the context exits; a free one (a local model)
        after it exits, off the search's path. A local model's query vectors skip the shared
        cache: on the CPU a short query takes less than reading the cache and writing it
        (BENCHMARKS.md, "Retrieval"); a few recent ones are kept in this process instead."""
        embedder = await self.serving(tenant_id=tenant_id, collection_ids=collection_ids)
        local = embedder.provider == LOCAL_PROVIDER
        recent = (embedder.name, embedding_key(text))
        record: Coroutine[None, None, None] | None = None
        if local and recent in self._recent_queries:
            self._recent_queries.move_to_end(recent)
            embeddings_made.labels("cache").inc()
            embedding = self._recent_queries[recent]
        else:
            [embedding], record, _ = await self._embed(
                tenant_id=tenant_id, embedder=embedder, contents=[text], shared_cache=not local, billed_to=billed_to
            )
            if local:
                self._recent_queries[recent] = embedding
                if len(self._recent_queries) > RECENT_QUERIES:
                    self._recent_queries.popitem(last=False)
        paid = asyncio.create_task(record) if record is not None and not local else None
        try:
            yield QueryVector(model=embedder.name, dimensions=embedder.dimensions, embedding=embedding)
        finally:
            if paid is not None:
                # Not undone by a search cancelled meanwhile.
                await asyncio.shield(paid)
            elif record is not None:
                task = asyncio.create_task(record)
                self._recording.add(task)
                task.add_done_callback(self._recording.discard)

    async def embed(self, *, tenant_id: str, embedder: Embedder, contents: Sequence[str]) -> list[list[float]]:
        """One vector per content, in order; only contents this model never embedded reach it,
        and that call is billed to `tenant_id`."""
        vectors, record, _ = await self._embed(tenant_id=tenant_id, embedder=embedder, contents=contents)
        if record is not None:
            await record
        return vectors

    async def embed_for(
        self,
        *,
        tenant_id: str,
        collection_ids: Sequence[str],
        contents: Sequence[str],
        billed_to: Identity | None = None,
    ) -> tuple[Embedder, list[list[float]], int]:
        """Texts a caller asked to embed (`Embed`, the gateway's /v1/embeddings): by the model that
        serves these collections, so the vectors compare with theirs; through the cache, billed
        to the tenant. Returns the model, the vectors and the tokens the model was called for."""
        embedder = await self.serving(tenant_id=tenant_id, collection_ids=collection_ids)
        vectors, record, tokens = await self._embed(
            tenant_id=tenant_id, embedder=embedder, contents=contents, billed_to=billed_to
        )
        if record is not None:
            await record
        return embedder, vectors, tokens

    async def _embed(
        self,
        *,
        tenant_id: str,
        embedder: Embedder,
        contents: Sequence[str],
        shared_cache: bool = True,
        billed_to: Identity | None = None,
    ) -> tuple[list[list[float]], Coroutine[None, None, None] | None, int]:
        """The vectors, what is left to do once the model was called — cache them (unless
        `shared_cache` is off: then neither read nor written) and bill it (to `billed_to`'s user
        and API key when a caller asked, else to the tenant alone) — and the tokens billed."""
        keys = [embedding_key(content) for content in contents]
        known: dict[str, list[float]] = {}
        if shared_cache:
            async with self._sessions() as session:
                known = await store.cached_embeddings(session=session, model=embedder.name, content_hashes=keys)
        missing = {key: content for key, content in zip(keys, contents, strict=True) if key not in known}
        embeddings_made.labels("cache").inc(len(keys) - len(missing))
        if not missing:
            return [known[key] for key in keys], None, 0
        started = time.monotonic()
        try:
            embedded = await embedder.embed(list(missing.values()))
        except Exception:
            # A call that failed after its retries still counts: in the success rate, at no tokens.
            failed = _usage_event(
                tenant_id=tenant_id, embedder=embedder, tokens=0, started=started, success=False, billed_to=billed_to
            )
            async with self._sessions() as session, session.begin():
                await _enqueue_usage(session=session, event=failed)
            raise
        fresh = dict(zip(missing, embedded.vectors, strict=True))
        usage = _usage_event(
            tenant_id=tenant_id,
            embedder=embedder,
            tokens=embedded.input_tokens,
            started=started,
            success=True,
            billed_to=billed_to,
        )

        async def record() -> None:
            async with self._sessions() as session, session.begin():
                if embedder.provider == LOCAL_PROVIDER:
                    # A free call's record need not wait for the disk (store.commit_without_flush).
                    await store.commit_without_flush(session)
                if shared_cache:
                    await store.cache_embeddings(session=session, model=embedder.name, embeddings=fresh)
                await _enqueue_usage(session=session, event=usage)
            embeddings_made.labels("model").inc(len(missing))

        known.update(fresh)
        return [known[key] for key in keys], record(), embedded.input_tokens

    async def reembed_stale(self, *, after: str = "", batch: int = REEMBED_BATCH) -> str | None:
        """Give up to `batch` chunks past `after` (chunk id order) that lack the configured model's
        vector one; returns the last chunk id read, None when there was none. A maintenance job
        across tenants: it runs as the service's login role, outside row-level security, and
        changes nothing but vectors. Each vector is written in a transaction of its own, so it
        never holds one chunk's lock while waiting for another (an upsert replacing the same
        document could otherwise deadlock with it)."""
        async with self._sessions() as session:
            stale = await store.stale_chunks(session=session, model=self._embedder.name, after=after, limit=batch)
        if not stale:
            return None
        by_tenant: dict[str, list[StaleChunk]] = {}
        for chunk in stale:
            by_tenant.setdefault(chunk.tenant_id, []).append(chunk)
        for tenant_id, chunks in by_tenant.items():
            vectors = await self.embed(
                tenant_id=tenant_id,
                embedder=self._embedder,
                contents=[embedding_input(chunk.heading, chunk.text) for chunk in chunks],
            )
            for chunk, vector in zip(chunks, vectors, strict=True):
                try:
                    async with self._sessions() as session, session.begin():
                        await store.add_vector_if_chunk_exists(
                            session=session,
                            chunk_id=chunk.chunk_id,
                            model=self._embedder.name,
                            embedding=stored(vector),
                        )
                except IntegrityError:
                    # Its chunk was deleted between the read and the write: there is nothing to re-make.
                    continue
        return stale[-1].chunk_id

    async def reembed_until_current(self, stopping: asyncio.Event) -> None:
        """Give every chunk the configured model's vector, then finish the switch: search serves
        the configured model alone and the other models' vectors are deleted. Started at every
        start (replicas may duplicate some of the work); a model that fails is retried later."""
        after, remade = "", False
        while not stopping.is_set():
            try:
                last = await self.reembed_stale(after=after)
            except Exception:
                log.exception("re-embedding failed; retrying", extra={"fields": {"model": self._embedder.name}})
                await _sleep_unless(stopping, self._retry_seconds)
                continue
            if last is None:
                break
            after, remade = last, True
        if stopping.is_set():
            return
        self._switched = True
        if remade:
            log.info("re-embedded the index", extra={"fields": {"model": self._embedder.name}})
        await self._forget_other_models(stopping)

    async def _forget_other_models(self, stopping: asyncio.Event) -> None:
        after: str | None = ""
        try:
            while after is not None and not stopping.is_set():
                async with self._sessions() as session, session.begin():
                    after = await store.forget_vectors(
                        session=session, keep_model=self._embedder.name, after=after, limit=FORGET_BATCH
                    )
        except DBAPIError:
            # E.g. a deadlock with an upsert deleting the same chunks: the next start finishes it.
            log.exception("could not delete the previous models' vectors")


async def _enqueue_usage(*, session: AsyncSession, event: events_pb2.UsageRecorded) -> None:
    await outbox.enqueue(
        session=session, table=outbox_table, subject=USAGE_RECORDED, msg_id=event.event_id, message=event
    )


def _usage_event(
    *, tenant_id: str, embedder: Embedder, tokens: int, started: float, success: bool, billed_to: Identity | None
) -> events_pb2.UsageRecorded:
    occurred_at = Timestamp()
    occurred_at.GetCurrentTime()
    return events_pb2.UsageRecorded(
        event_id=str(uuid.uuid4()),
        tenant_id=tenant_id,
        # A caller's query or texts: their user and API key (per-user and per-key budgets); the
        # indexing pipeline's own work: the tenant alone.
        user_id=billed_to.user_id if billed_to else "",
        api_key_id=billed_to.api_key_id if billed_to else "",
        request_id=billed_to.request_id if billed_to else "",
        kind=USAGE_EMBEDDING,
        provider=embedder.provider,
        model=embedder.model,
        usage=common_pb2.TokenUsage(input_tokens=tokens),
        latency_ms=round((time.monotonic() - started) * 1000),
        success=success,
        occurred_at=occurred_at,
    )


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), timeout=seconds)
