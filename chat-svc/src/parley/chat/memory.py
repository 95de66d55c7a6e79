"""A conversation's memory beyond its window of recent messages: a rolling summary.

Once a conversation has `SUMMARY_AFTER` messages, each time its window (context_builder's
`window_start`) moves past messages the summary does not cover, the turn that moved it asks for
a new summary (a `SummarizeJob` on SUMMARIZE_JOBS, through the outbox in the turn's own
transaction). The job runs in the background, off any turn's path, and folds the older messages
into the previous summary. The prompt then carries the summary in place of those messages.

Who writes it (`PARLEY_SUMMARY_MODEL`, `providers.summary_model`): by default (`auto`) the
default provider, with its cheaper model where it serves one (Claude Haiku, GPT-4o mini), in one
call billed as usage kind `summary`; offline, with `local` as the default, no model at all: an
extractive summary, the first sentence of each older question and of its answer, so the window
still carries the gist. `provider:model` names the model; `off` keeps the window alone.
"""

import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence

from parley.chat import metrics, store
from parley.chat.context_builder import Prompt, window_start
from parley.chat.metering import attempt_event, usage_event
from parley.chat.providers import FailedAttempt, Finished, LlmProvider, TextDelta, summary_model
from parley.kit.contracts import USAGE_SUMMARY
from parley.kit.db import Sessions
from parley.kit.identity import Identity
from parley.kit.outbox import OutboxRelay
from parley.kit.tokens import count_tokens
from parley.v1 import chat_pb2

log = logging.getLogger(__name__)

SUMMARY_AFTER = 15
SUMMARY_MAX_TOKENS = 400
SUMMARY_INSTRUCTIONS = (
    "You keep the memory of a conversation between a user and an assistant about the user's documents. "
    "Rewrite the summary so far together with the messages that follow it as one summary of at most "
    "150 words: what was asked, what was answered or decided, names, and open questions. "
    "Reply with the summary only."
)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_FIRST_SENTENCE_CHARS = 240


def summary_due(*, total_messages: int, summarized: int, window: int) -> int | None:
    """How many messages a new summary should cover, or None when the current one will do."""
    through = window_start(total=total_messages, last=window)
    return through if total_messages >= SUMMARY_AFTER and through > summarized else None


def first_sentence(text: str) -> str:
    sentence = _SENTENCE_END.split(" ".join(text.split()), maxsplit=1)[0]
    return sentence if len(sentence) <= _FIRST_SENTENCE_CHARS else sentence[: _FIRST_SENTENCE_CHARS - 1] + "…"


def extractive_summary(previous: str, folded: Sequence[store.MessageRecord], *, max_tokens: int) -> str:
    """The previous summary's lines, then one line per folded message (its first sentence); the oldest
    lines dropped while it runs over `max_tokens`."""
    lines = [line for line in previous.split("\n") if line.strip()]
    lines += [
        f"{'User asked' if message.role == 'user' else 'Assistant answered'}: {first_sentence(message.content)}"
        for message in folded
        if message.content.strip()
    ]
    while len(lines) > 1 and count_tokens("\n".join(lines)) > max_tokens:
        lines.pop(0)
    return "\n".join(lines)


class Summarizer:
    def __init__(
        self,
        *,
        sessions: Sessions,
        relay: OutboxRelay,
        model: tuple[LlmProvider, str] | None,
        window: int,
        extractive: bool = False,
    ) -> None:
        self._sessions = sessions
        self._relay = relay
        self._model = model
        self._extractive = extractive and model is None
        self._window = window

    @classmethod
    def configured(
        cls,
        spec: str,
        providers: Mapping[str, LlmProvider],
        *,
        default_provider: str,
        sessions: Sessions,
        relay: OutboxRelay,
        window: int,
    ) -> "Summarizer":
        """From `PARLEY_SUMMARY_MODEL` (`auto`, `off` or `provider:model`); one not served stops the service."""
        model = summary_model(spec, providers, default_provider=default_provider)
        if isinstance(model, str):  # the one string it answers is EXTRACTIVE
            return cls(sessions=sessions, relay=relay, model=None, window=window, extractive=True)
        return cls(sessions=sessions, relay=relay, model=model, window=window)

    def job(
        self, owner: store.Owner, conversation_id: str, *, summarized: int, total_messages: int
    ) -> chat_pb2.SummarizeJob | None:
        """The job a turn that brought the conversation to `total_messages` should request, if any."""
        if self._model is None and not self._extractive:
            return None
        through = summary_due(total_messages=total_messages, summarized=summarized, window=self._window)
        if through is None:
            return None
        return chat_pb2.SummarizeJob(
            tenant_id=owner.tenant_id,
            user_id=owner.user_id,
            conversation_id=conversation_id,
            through_messages=through,
        )

    async def summarize(self, job: chat_pb2.SummarizeJob) -> None:
        if self._model is None and not self._extractive:
            return
        owner = store.Owner(job.tenant_id, job.user_id)
        async with self._sessions() as session:
            await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
            conversation = await store.get_conversation(
                session=session, owner=owner, conversation_id=job.conversation_id
            )
            if conversation is None or conversation.summarized_messages >= job.through_messages:
                return  # deleted since, or a later job got there first
            messages = await store.conversation_messages(
                session=session, tenant_id=owner.tenant_id, conversation_id=conversation.id
            )
        folded = messages[conversation.summarized_messages : job.through_messages]
        if self._model is None:  # extractive: no call, nothing to bill
            summary = extractive_summary(conversation.summary, folded, max_tokens=SUMMARY_MAX_TOKENS)
            async with self._sessions.begin() as session:
                await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
                await store.save_summary(
                    session=session,
                    tenant_id=owner.tenant_id,
                    conversation_id=conversation.id,
                    summary=summary,
                    through_messages=job.through_messages,
                )
            return
        transcript = "\n\n".join(
            f"{'User' if message.role == 'user' else 'Assistant'}: {message.content}" for message in folded
        )
        asked = f"Summary so far:\n{conversation.summary or '(none)'}\n\nMessages:\n{transcript}"
        provider, model = self._model
        started = time.monotonic()
        said: list[str] = []
        finished: Finished | None = None
        identity = Identity(tenant_id=owner.tenant_id, user_id=owner.user_id, request_id=f"summary:{conversation.id}")
        run = str(uuid.uuid4())  # this run's call: a job redelivered and run again is another call
        async for event in provider.stream(
            Prompt(SUMMARY_INSTRUCTIONS, (), (), asked), model=model, max_tokens=SUMMARY_MAX_TOKENS
        ):
            if isinstance(event, TextDelta):
                said.append(event.text)
            elif isinstance(event, FailedAttempt):  # billed by the provider before it failed: so by us
                billed = attempt_event(
                    identity, event, kind=USAGE_SUMMARY, call_id=run, conversation_id=conversation.id
                )
                async with self._sessions.begin() as session:
                    await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
                    await store.record_usage(session=session, usage_event=billed)
                self._relay.notify()
            elif isinstance(event, Finished):
                finished = event
        assert finished is not None, "a provider stream ends with Finished"
        async with self._sessions.begin() as session:
            await store.enter_tenant(session=session, tenant_id=owner.tenant_id)
            await store.save_summary(
                session=session,
                tenant_id=owner.tenant_id,
                conversation_id=conversation.id,
                summary="".join(said).strip(),
                through_messages=job.through_messages,
            )
            # Billed even when a racing job's summary won: the call was made.
            await store.record_usage(
                session=session,
                usage_event=usage_event(
                    identity,
                    kind=USAGE_SUMMARY,
                    usage=finished.usage,
                    provider=finished.provider,
                    model=finished.model,
                    reservation_id="",
                    conversation_id=conversation.id,
                    latency_ms=int((time.monotonic() - started) * 1000),
                    success=True,
                ),
            )
        self._relay.notify()
        metrics.observe_usage(finished.usage, provider=finished.provider, model=finished.model)
