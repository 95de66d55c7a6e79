"""Gathering a turn's context: what the turn asks, the conversation it continues, and the
passages its prompt is built from.

`validate` holds the rules a message must meet. `ContextGatherer` reads the caller's
conversation and its recent messages (`SentConversation`: as the model read them, for the
context builder), decides the message's intent (the classification call is billed on its own,
kind `intent`), and fetches the passages that intent calls for: a semantic search, the open
section's neighbours, passages like it, or none (the global context is the context). The passages
earlier turns sent are in the conversation as it was sent, not fetched again. Every read is of the
caller's tenant only.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from parley.chat import store
from parley.chat.clients import Retrieval
from parley.chat.config import Settings
from parley.chat.context_builder import Turn, history_window
from parley.chat.intent import HYBRID, MINIMAL, POSITIONAL, SEMANTIC, Intent, IntentClassifier
from parley.chat.metering import Meter, usage_event
from parley.kit.contracts import (
    INTENTS,
    MAX_COLLECTIONS_PER_CONVERSATION,
    MAX_MESSAGE_CHARS,
    MAX_OUTPUT_TOKENS,
    MAX_QUERY_CHARS,
    USAGE_INTENT,
)
from parley.kit.db import Sessions
from parley.kit.errors import InvalidInput, NotFound
from parley.kit.identity import Identity
from parley.v1 import common_pb2, retrieval_pb2

# OpenAI's range. Only the OpenAI-API providers are given it: Anthropic's API (2026-10-21, the
# SDK 2.x default) refuses every sampling parameter, and the `local` provider does not sample.
MAX_TEMPERATURE = 2.0


@dataclass(frozen=True, slots=True)
class TurnRequest:
    conversation_id: str
    collection_ids: tuple[str, ...]
    message: str
    tier: int
    max_tokens: int
    provider: str
    model: str
    intent: str  # the caller's hint of what the message asks for, or empty
    current_section_id: str = ""  # the chunk the user has open, or empty
    temperature: float | None = None  # 0 to 2; None: the provider's default


def validate(request: TurnRequest) -> None:
    """The rules a message must meet; the gateway checks them too, this is the second lock."""
    message = request.message
    if not message.strip():
        raise InvalidInput("message must not be empty")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidInput(f"message is {len(message)} characters; the limit is {MAX_MESSAGE_CHARS}")
    if "\x00" in message:
        raise InvalidInput("message must not contain NUL characters")
    if not request.conversation_id and not request.collection_ids:
        raise InvalidInput("give collection_ids to start a conversation, or a conversation_id")
    if len(request.collection_ids) > MAX_COLLECTIONS_PER_CONVERSATION:
        raise InvalidInput(f"at most {MAX_COLLECTIONS_PER_CONVERSATION} collections per conversation")
    if not 0 <= request.max_tokens <= MAX_OUTPUT_TOKENS:
        raise InvalidInput(f"max_tokens must be between 1 and {MAX_OUTPUT_TOKENS}")
    if request.temperature is not None and not 0 <= request.temperature <= MAX_TEMPERATURE:
        raise InvalidInput(f"temperature must be between 0 and {MAX_TEMPERATURE:g}")
    if request.intent and request.intent not in INTENTS:
        raise InvalidInput(f"unknown intent {request.intent!r}; known: {', '.join(INTENTS)}")


@dataclass(frozen=True, slots=True)
class TurnContext:
    """What a turn's prompt is built from, and how it was gathered."""

    intent: Intent
    retrieval: str  # the strategy that ran
    hits: list[retrieval_pb2.ChunkHit]
    local: str
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SentConversation:
    """A conversation's window of recent messages as the model read them, and what the context
    builder needs to send it again as it was."""

    turns: list[Turn]
    before: int  # the conversation's messages before the window
    since: int  # where the last turn's cut was (`ContextUsed.conversation_from`), as an index into the window
    next_number: int  # past every passage number the window has used
    last_at: datetime | None  # when its last message was written

    @classmethod
    def of(cls, window: Sequence[store.MessageRecord], *, total: int) -> "SentConversation":
        before = total - len(window)
        answer = next((m for m in reversed(window) if m.role == "assistant" and m.context_used is not None), None)
        numbers = [n for m in window for n in (*(n for _, n in m.sent_passages), *(s.index for s in m.sources))]
        return cls(
            turns=[Turn(m.role, m.as_sent, holds=m.sent_passages, plain=m.content) for m in window],
            before=before,
            since=answer.context_used.conversation_from - before if answer and answer.context_used else 0,
            next_number=max(numbers, default=0) + 1,
            last_at=window[-1].created_at if window else None,
        )


NO_CONVERSATION = SentConversation(turns=[], before=0, since=0, next_number=1, last_at=None)


class ContextGatherer:
    def __init__(
        self,
        *,
        settings: Settings,
        sessions: Sessions,
        retrieval: Retrieval,
        intents: IntentClassifier,
        meter: Meter,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._retrieval = retrieval
        self._intents = intents
        self._meter = meter

    async def conversation(
        self, owner: store.Owner, request: TurnRequest
    ) -> tuple[store.ConversationRecord | None, SentConversation]:
        """The caller's conversation this turn continues and its recent messages as they were sent,
        in the window the context builder keeps (none for a new one)."""
        if not request.conversation_id:
            return None, NO_CONVERSATION
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
            conversation = await store.get_conversation(
                session=session, owner=owner, conversation_id=request.conversation_id
            )
            if conversation is None:
                raise NotFound(f"conversation {request.conversation_id} not found")
            recent = await store.conversation_messages(
                session=session,
                tenant_id=owner.tenant_id,
                conversation_id=conversation.id,
                last=self._settings.history_messages,
            )
            total = await store.count_messages(
                session=session, tenant_id=owner.tenant_id, conversation_id=conversation.id
            )
        window = history_window(recent, total=total, last=self._settings.history_messages)
        return conversation, SentConversation.of(window, total=total)

    async def gather(
        self,
        identity: Identity,
        request: TurnRequest,
        *,
        collection_ids: Sequence[str],
        has_global: bool = False,
    ) -> TurnContext:
        """The intent, then the passages it calls for and the open section's text."""
        section: retrieval_pb2.ChunkHit | None = None
        if request.current_section_id:
            found = await self._retrieval.chunks(identity, [request.current_section_id])
            if not found or found[0].collection_id not in collection_ids:
                raise NotFound(f"section {request.current_section_id} not found in this conversation's collections")
            section = found[0]

        async def bill(usage: common_pb2.TokenUsage, provider: str, model: str) -> None:
            await self._bill_intent(identity, request.conversation_id, usage, provider=provider, model=model)

        intent = await self._intents.decide(hint=request.intent, message=request.message, bill=bill)
        notes: list[str] = []
        strategy = intent.retrieval
        if strategy == MINIMAL and not has_global:
            notes.append("no outline exists yet: semantic retrieval instead of the outline")
            strategy = SEMANTIC
        if strategy in (POSITIONAL, HYBRID) and section is None:
            notes.append(f"{intent.name} without a current_section_id: semantic retrieval instead")
            strategy = SEMANTIC
        if strategy == MINIMAL:  # the global context (outline, sheets, scene index) is its context
            hits = []
        elif section is not None and strategy == POSITIONAL:
            around = await self._retrieval.neighbours(
                identity, document_id=section.document_id, ordinal=section.ordinal, before=1, after=1
            )
            hits = [chunk for chunk in around if chunk.chunk_id != section.chunk_id]
        elif section is not None and strategy == HYBRID:
            similar = await self._retrieval.search(
                identity,
                query=section.text[:MAX_QUERY_CHARS],
                collection_ids=collection_ids,
                k=self._settings.similar_k + 1,  # the section finds itself first
            )
            notes += _degraded(similar)
            hits = [hit for hit in similar.hits if hit.chunk_id != section.chunk_id][: self._settings.similar_k]
        else:
            searched = await self._retrieval.search(
                identity,
                # Retrieval takes queries up to its limit; a long message most often asks at its end.
                query=request.message[-MAX_QUERY_CHARS:],
                collection_ids=collection_ids,
                k=self._settings.semantic_k,
            )
            notes += _degraded(searched)
            hits = list(searched.hits)
        return TurnContext(
            intent=intent,
            retrieval=strategy,
            hits=hits,
            local=section.text if section is not None else "",
            notes=tuple(notes),
        )

    async def _bill_intent(
        self, identity: Identity, conversation_id: str, usage: common_pb2.TokenUsage, *, provider: str, model: str
    ) -> None:
        """The classification call, metered on its own (no hold: it is a few tokens of a cheap model)."""
        event = usage_event(
            identity,
            kind=USAGE_INTENT,
            usage=usage,
            provider=provider,
            model=model,
            reservation_id="",
            conversation_id=conversation_id,
            latency_ms=0,
            success=True,
        )
        await self._meter.record(event)


def _degraded(found: retrieval_pb2.SearchResponse) -> list[str]:
    """The context report's note for a search that ran without some of its legs."""
    if "vector" in found.degraded:
        return ["the embeddings provider is unreachable: passages found by keyword alone"]
    return [f"search ran without its {leg} leg" for leg in found.degraded]
