"""A caller's conversations and turns as stored: listed a page at a time, read, deleted, and
whether a turn's events can still be read."""

import uuid
from dataclasses import dataclass

from nats.js import JetStreamContext

from parley.chat import store
from parley.chat.turn_stream import events_kept
from parley.kit.db import Sessions
from parley.kit.errors import NotFound
from parley.kit.paging import Cursor, decode_token, encode_token, page_size


@dataclass(frozen=True, slots=True)
class ConversationPage:
    conversations: list[store.ConversationRecord]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class MessagePage:
    conversation: store.ConversationRecord
    messages: list[store.MessageRecord]  # oldest first
    next_page_token: str  # reads the messages before these; "" when these are the first


@dataclass(frozen=True, slots=True)
class TurnView:
    turn: store.TurnRecord
    events_kept: bool  # False once the stream has dropped the turn's events


class Conversations:
    def __init__(self, *, sessions: Sessions, js: JetStreamContext) -> None:
        self._sessions = sessions
        self._js = js

    async def page(self, owner: store.Owner, *, size: int, token: str) -> ConversationPage:
        limit = page_size(size)
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
            rows = await store.list_conversations(
                session=session, owner=owner, limit=limit + 1, after=decode_token(token)
            )
        page, more = rows[:limit], len(rows) > limit
        next_token = encode_token(Cursor(at=page[-1].updated_at, id=uuid.UUID(page[-1].id))) if more else ""
        return ConversationPage(page, next_token)

    async def get(
        self, owner: store.Owner, conversation_id: str
    ) -> tuple[store.ConversationRecord, list[store.MessageRecord]]:
        """The conversation with every message (an export)."""
        page = await self.read(owner, conversation_id, size=None, token="")
        return page.conversation, page.messages

    async def read(self, owner: store.Owner, conversation_id: str, *, size: int | None, token: str) -> MessagePage:
        """The conversation with its most recent `size` messages before the token's (newest last), and
        the token for those before them; `size` None: every message."""
        limit = None if size is None else page_size(size)
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
            conversation = await store.get_conversation(session=session, owner=owner, conversation_id=conversation_id)
            if conversation is None:
                raise NotFound(f"conversation {conversation_id} not found")
            rows = await store.conversation_messages(
                session=session,
                tenant_id=owner.tenant_id,
                conversation_id=conversation.id,
                last=None if limit is None else limit + 1,
                before=decode_token(token),
            )
        if limit is None or len(rows) <= limit:
            return MessagePage(conversation, rows, "")
        page = rows[1:]  # one more than asked was read: there are older messages
        oldest = page[0]
        return MessagePage(conversation, page, encode_token(Cursor(at=oldest.created_at, id=uuid.UUID(oldest.id))))

    async def delete(self, owner: store.Owner, conversation_id: str) -> None:
        async with self._sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
            deleted = await store.delete_conversation(session=session, owner=owner, conversation_id=conversation_id)
        if not deleted:
            raise NotFound(f"conversation {conversation_id} not found")

    async def turn(self, owner: store.Owner, *, conversation_id: str, turn_id: str) -> TurnView:
        """The caller's turn; one that never existed (or is another owner's) is NotFound."""
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
            turn = await store.get_turn(session=session, owner=owner, conversation_id=conversation_id, turn_id=turn_id)
        if turn is None:
            raise NotFound(f"turn {turn_id} not found")
        # A running turn may not have published yet: its events are coming, not gone.
        kept = turn.state == "running" or await events_kept(
            self._js, conversation_id=turn.conversation_id, turn_id=turn.id
        )
        return TurnView(turn, kept)
