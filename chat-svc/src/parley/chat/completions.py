"""Completions for other services: one prompt in, one answer out, held and billed like a turn.

chat-svc is the one place that holds LLM providers: ingestion's artifacts (scene cards, outlines,
character sheets) are written through `Complete` rather than by provider code of its own. A call:

- is the caller's (tenant and user from the call's metadata, as every chat rpc);
- is checked: a prompt that is not blank, system and prompt together at most
  `contracts.MAX_COMPLETION_CHARS`, no NUL, max_tokens 0 (the service default, capped at
  `MAX_OUTPUT_TOKENS`) up to `MAX_OUTPUT_TOKENS`, a kind of `contracts.COMPLETION_KINDS` (empty:
  `summary`);
- names its provider and model, checked as a turn's are (`providers.choose`: unknown ones
  are InvalidInput); none named: the summary model when `PARLEY_SUMMARY_MODEL` names one
  (`provider:model`), else the default provider and its default model;
- is counted by the provider (off the event loop: a prompt may be long) and held with usage-svc
  `Reserve` for that prompt plus max_tokens of output, times the calls it may be billed for
  (`providers.billed_calls`), at its dearest route (its fallbacks'); a refused hold is `BudgetExceeded`
  (RESOURCE_EXHAUSTED), and nothing is called or billed;
- runs on the provider (a remote one through its `ReliableProvider`: retries and fallbacks before
  the first token), the answer collected, within the call's gRPC deadline less a margin kept to
  record the outcome;
- is billed by ONE usage event through the outbox (`Meter`): the kind, the provider and model that
  answered, their usage, the hold's reservation id (which releases the hold), the request's
  `request_id` (else the call's), latency and success; and an attempt the provider billed before
  it failed (a `FailedAttempt`) by one event of its own, at once (no hold named; its id the
  hold's and the attempt's, so a replay records it once).

A call that fails once held — the provider refused or stayed unavailable, broke off mid-answer, ran
past the deadline, or the caller went away — is billed `success=false` for what the provider
produced (its own figures when it broke off; when cut off by us, what it reported plus the bytes
of the text received since, or the provider's bound of the prompt and those bytes if it reported
nothing; zero tokens when it neither reported nor said anything), which releases the hold, and is
`Unavailable` with the reason.
"""

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping

from parley.chat import metrics
from parley.chat.clients import Budget, Hold
from parley.chat.config import Settings
from parley.chat.context_builder import Prompt
from parley.chat.metering import Meter, attempt_event, usage_event
from parley.chat.providers import (
    FailedAttempt,
    Finished,
    LlmProvider,
    ProviderEvent,
    ProviderRefused,
    ProviderUnavailable,
    Reported,
    StreamBroken,
    TextDelta,
    choose,
    configured_model,
    cut_off_usage,
    hold_size,
)
from parley.kit.contracts import COMPLETION_KINDS, MAX_COMPLETION_CHARS, MAX_OUTPUT_TOKENS
from parley.kit.errors import InvalidInput, Unavailable
from parley.kit.identity import Identity
from parley.v1 import chat_pb2, common_pb2

log = logging.getLogger(__name__)

# Of the call's deadline, what is kept back to bill the call when the provider is given up on.
RECORD_SHARE = 0.1
RECORD_MAX_SECONDS = 1.0


def validate(request: chat_pb2.CompleteRequest) -> str:
    """The rules a completion request must meet; its usage kind."""
    if not request.prompt.strip():
        raise InvalidInput("prompt must not be empty")
    length = len(request.system) + len(request.prompt)
    if length > MAX_COMPLETION_CHARS:
        raise InvalidInput(f"system and prompt are {length} characters; the limit is {MAX_COMPLETION_CHARS}")
    if "\x00" in request.system or "\x00" in request.prompt:
        raise InvalidInput("system and prompt must not contain NUL characters")
    if not 0 <= request.max_tokens <= MAX_OUTPUT_TOKENS:
        raise InvalidInput(f"max_tokens must be between 1 and {MAX_OUTPUT_TOKENS}, or 0 for the default")
    kind = request.kind or COMPLETION_KINDS[0]
    if kind not in COMPLETION_KINDS:
        raise InvalidInput(f"a completion cannot be billed as {kind!r}; kinds: {', '.join(COMPLETION_KINDS)}")
    return kind


class _Collected:
    """The text of an answer so far, what the provider reported before it, and its end once the
    provider has finished; each failed attempt the provider billed handed to `on_attempt`."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.reported: Reported | None = None
        self.since_report = ""  # the text received after the last report
        self.finished: Finished | None = None

    @property
    def text(self) -> str:
        return "".join(self.parts)

    async def read(
        self, events: AsyncIterator[ProviderEvent], on_attempt: Callable[[FailedAttempt], Awaitable[None]]
    ) -> Finished:
        async for event in events:
            if isinstance(event, TextDelta):
                self.parts.append(event.text)
                self.since_report += event.text
            elif isinstance(event, Reported):
                self.reported, self.since_report = event, ""
            elif isinstance(event, FailedAttempt):
                await on_attempt(event)
            else:
                self.finished = event
        assert self.finished is not None, "a provider stream ends with Finished"
        return self.finished

    def cut_off(self, input_bound: int) -> common_pb2.TokenUsage:
        """What the provider charges for the call cut off by us here (`providers.cut_off_usage`)."""
        return cut_off_usage(self.reported, self.since_report, prompt_bound=lambda: input_bound)


@dataclasses.dataclass(frozen=True, slots=True)
class _Call:
    identity: Identity  # the caller's, with the request's request_id for the usage event
    kind: str
    provider: LlmProvider
    model: str
    input_bound: int  # the provider's bound of the prompt: a call we cut off unreported is billed it
    hold: Hold
    started: float


class Completions:
    def __init__(
        self,
        *,
        providers: Mapping[str, LlmProvider],
        default: tuple[LlmProvider, str],
        default_max_tokens: int,
        budget: Budget,
        meter: Meter,
    ) -> None:
        self._providers = providers
        self._default = default
        self._default_max_tokens = min(default_max_tokens, MAX_OUTPUT_TOKENS)
        self._budget = budget
        self._meter = meter

    @classmethod
    def configured(
        cls, settings: Settings, providers: Mapping[str, LlmProvider], *, budget: Budget, meter: Meter
    ) -> "Completions":
        """The default model is the summary model when the setting names one, as for a conversation's
        rolling summary, else the default provider's default model."""
        default = configured_model("PARLEY_SUMMARY_MODEL", settings.summary_model, providers)
        if default is None:
            provider = providers[settings.default_provider]
            default = (provider, provider.default_model)
        return cls(
            providers=providers,
            default=default,
            default_max_tokens=settings.default_max_tokens,
            budget=budget,
            meter=meter,
        )

    async def complete(
        self, identity: Identity, request: chat_pb2.CompleteRequest, *, within: float | None
    ) -> chat_pb2.CompleteResponse:
        """`within`: the seconds left of the call's deadline (None: no deadline)."""
        deadline = None if within is None else asyncio.get_running_loop().time() + within
        kind = validate(request)
        provider, model = choose(self._providers, provider=request.provider, model=request.model, default=self._default)
        max_tokens = request.max_tokens or self._default_max_tokens
        prompt = Prompt(request.system, (), (), request.prompt)
        # The hold on the provider's bound of the prompt (never less than the bill); a call cut off
        # is billed on our estimate, as a cancelled turn is.
        bound = await asyncio.to_thread(provider.count_tokens, prompt, model=model)
        size = hold_size(provider, model, input_tokens=bound, max_output_tokens=max_tokens)
        hold = await self._budget.reserve(
            identity,
            provider=provider.name,
            model=model,
            input_tokens=size.input_tokens,
            max_output_tokens=size.max_output_tokens,
            fallbacks=size.fallbacks,
        )
        call = _Call(
            identity=dataclasses.replace(identity, request_id=request.request_id or identity.request_id),
            kind=kind,
            provider=provider,
            model=model,
            input_bound=bound,
            hold=hold,
            started=time.monotonic(),
        )
        answer = _Collected()
        try:
            async with asyncio.timeout_at(_provider_deadline(deadline)):
                finished = await answer.read(
                    provider.stream(prompt, model=model, max_tokens=max_tokens),
                    lambda attempt: self._bill_attempt(call, attempt),
                )
        except asyncio.CancelledError:  # the caller went away: the provider charges for what it said
            await self._failed(call, "cancelled", usage=answer.cut_off(call.input_bound))
            raise
        except TimeoutError:
            await self._failed(call, "deadline_exceeded", usage=answer.cut_off(call.input_bound))
            raise Unavailable(f"{provider.name} did not answer within the call's deadline") from None
        except StreamBroken as broken:
            await self._failed(
                call, "provider_interrupted", usage=broken.usage, provider=broken.provider, model=broken.model
            )
            raise Unavailable(f"{broken.provider} stopped mid-answer: {broken}") from None
        except ProviderRefused as refused:
            await self._failed(call, "provider_refused")
            raise Unavailable(f"{refused.provider} refused the request: {refused}") from None
        except ProviderUnavailable as unavailable:
            await self._failed(call, "provider_unavailable")
            raise Unavailable(f"{unavailable.provider} is unavailable: {unavailable}") from None
        except Exception:
            log.exception("a completion failed", extra={"fields": {"request_id": call.identity.request_id}})
            await self._failed(call, "internal")
            raise
        await self._bill(call, finished.usage, provider=finished.provider, model=finished.model, success=True)
        metrics.completions.labels(kind, "completed").inc()
        return chat_pb2.CompleteResponse(
            text=answer.text, provider=finished.provider, model=finished.model, usage=finished.usage
        )

    async def _failed(
        self,
        call: _Call,
        outcome: str,
        *,
        usage: common_pb2.TokenUsage | None = None,
        provider: str = "",
        model: str = "",
    ) -> None:
        """Bill a failed call (zero tokens unless told otherwise), which releases its hold."""
        metrics.completions.labels(call.kind, outcome).inc()
        try:
            await self._bill(
                call,
                usage or common_pb2.TokenUsage(),
                provider=provider or call.provider.name,
                model=model or call.model,
                success=False,
            )
        except Exception:  # the call's own failure is what its caller needs to hear
            log.exception("could not bill a failed completion", extra={"fields": {"outcome": outcome}})

    async def _bill_attempt(self, call: _Call, attempt: FailedAttempt) -> None:
        """An attempt the provider billed before it failed: its own event, keyed by the call's hold."""
        await self._meter.record(
            attempt_event(call.identity, attempt, kind=call.kind, call_id=call.hold.reservation_id)
        )

    async def _bill(
        self, call: _Call, usage: common_pb2.TokenUsage, *, provider: str, model: str, success: bool
    ) -> None:
        event = usage_event(
            call.identity,
            kind=call.kind,
            usage=usage,
            provider=provider,
            model=model,
            reservation_id=call.hold.reservation_id,
            conversation_id="",
            latency_ms=int((time.monotonic() - call.started) * 1000),
            success=success,
        )
        try:
            await self._meter.record(event)
        except BaseException:
            # No event will release the hold: release it now rather than leave it to expire.
            try:
                await self._budget.release(call.identity, call.hold.reservation_id)
            except Exception:
                log.exception("could not release a hold", extra={"fields": {"reservation": event.reservation_id}})
            raise


def _provider_deadline(deadline: float | None) -> float | None:
    """When to give up on the provider (loop time): before the call's deadline, by time enough to bill it."""
    if deadline is None:
        return None
    left = max(0.0, deadline - asyncio.get_running_loop().time())
    return deadline - min(RECORD_MAX_SECONDS, left * RECORD_SHARE)
