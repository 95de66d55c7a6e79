"""Reliable before the first token, honest after it: a provider wrapped in retries and fallbacks.

Before the first token a failed attempt has cost nothing and shown nothing, so:
- no token within `first_token_timeout` (25 s) abandons the attempt;
- a `ProviderUnavailable` (429, 5xx, 529 overloaded, connection lost, that timeout) is retried
  up to `retries` times, waiting an exponential backoff with jitter, and never less than the
  provider's `retry-after`; a provider asking to wait longer than `max_retry_after` is treated
  as down for this turn;
- a `ProviderRefused` (auth, invalid request, spend limit) is not retried: it would fail again;
- then the next configured fallback route (another provider, or another model) gets the same
  treatment; a refusal moves on too, since another route has other credentials or limits.
A failed attempt may still have cost something: Anthropic reports the input (and bills it) in
`message_start`, before the first token, and a stream can break right after. Such an attempt's
error carries that usage, and the stream yields it as a `FailedAttempt` (its provider and model:
a fallback is priced as itself) for the caller to bill as its own usage event. Paid attempts are
bounded, since the caller's budget hold must cover them: after `paid_retries + 1` attempts that
were billed, nothing more is tried, so a call costs at most `billed_calls` (1 + `paid_retries`)
calls of its dearest route (`hold_routes`): what a hold is priced at.
After the first token nothing is retried: the answer has been seen, and a second one would be
billed twice and read differently. The provider raises `StreamBroken` with the usage to bill,
and it passes through to the caller, which ends the stream with an error and keeps the partial
answer.

The `Finished` of a stream names the provider and model that answered: after a fallback that
is not the one asked for, and the price differs. Each retry, fallback and failed attempt is
counted in `parley.chat.metrics`.
"""

import asyncio
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from parley.chat import metrics
from parley.chat.context_builder import Prompt
from parley.chat.providers.base import FailedAttempt, LlmProvider, ProviderEvent, Reported
from parley.chat.providers.errors import (
    FirstTokenTimeout,
    ProviderError,
    ProviderRefused,
    ProviderUnavailable,
    StreamBroken,
)
from parley.v1 import common_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first_token_timeout: float = 25.0
    retries: int = 3
    backoff_base: float = 0.5  # before the first retry; doubled for each one after
    backoff_max: float = 8.0
    max_retry_after: float = 30.0
    # Attempts that failed after the provider billed them (reported usage), beyond the first, that
    # may still be followed by another: the hold covers 1 + paid_retries calls.
    paid_retries: int = 1


@dataclass(frozen=True, slots=True)
class Route:
    provider: LlmProvider
    model: str


class ReliableProvider:
    """An `LlmProvider` itself: `stream(prompt, model=, max_tokens=)` goes to `primary` first.

    It closes its primary only: a fallback route's provider is another entry's primary.
    """

    def __init__(
        self,
        primary: LlmProvider,
        *,
        fallbacks: Sequence[Route] = (),
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.name = primary.name
        self.default_model = primary.default_model
        self.models = primary.models
        self._primary = primary
        self._fallbacks = tuple(fallbacks)
        self._policy = policy or RetryPolicy()
        self._sleep = sleep
        self._jitter = jitter

    def count_tokens(self, prompt: Prompt, *, model: str) -> int:
        """The most of any route's bound: a fallback sends the prompt in its own provider's format."""
        return max(route.provider.count_tokens(prompt, model=route.model) for route in self._routes(model))

    def routes(self, model: str) -> tuple[tuple[str, str], ...]:
        """(provider, model) of every route a call for `model` may take, the asked one first."""
        return tuple(_key(route) for route in self._routes(model))

    @property
    def billed_calls(self) -> int:
        """The most calls one `stream` may be billed for: its answer and the paid attempts before it."""
        return 1 + self._policy.paid_retries

    def _routes(self, model: str) -> list[Route]:
        asked = Route(self._primary, model)
        return [asked, *(route for route in self._fallbacks if _key(route) != _key(asked))]

    async def close(self) -> None:
        await self._primary.close()

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        failure: ProviderError = ProviderUnavailable("no route was tried", provider=self.name)
        tried = paid = 0
        for position, route in enumerate(self._routes(model)):
            name = route.provider.name
            if position:
                metrics.provider_fallbacks.labels(name, route.model).inc()
            for attempt in range(self._policy.retries + 1):
                if attempt:
                    delay = self._delay(attempt, failure)
                    if delay is None:
                        break
                    metrics.provider_retries.labels(name, route.model).inc()
                    await self._sleep(delay)
                tried += 1
                events = route.provider.stream(prompt, model=route.model, max_tokens=max_tokens)
                try:
                    reported, first = await self._first_event(events, route)
                except (ProviderUnavailable, ProviderRefused) as error:
                    failure = error
                    if error.usage is not None:  # the provider billed this attempt: so does the caller
                        paid += 1
                        yield FailedAttempt(error.usage, provider=name, model=route.model, number=tried)
                    if isinstance(error, ProviderRefused):
                        metrics.provider_errors.labels(name, "refused").inc()
                        log.warning("%s/%s refused the request: %s", name, route.model, error)
                    else:
                        code = "first_token_timeout" if isinstance(error, FirstTokenTimeout) else "unavailable"
                        metrics.provider_errors.labels(name, code).inc()
                        log.warning("%s/%s unavailable (attempt %d): %s", name, route.model, attempt + 1, error)
                    if paid > self._policy.paid_retries:
                        raise error from None  # the caller's hold covers no further attempt
                    if isinstance(error, ProviderRefused):
                        break
                    continue
                try:
                    if reported is not None:
                        yield reported
                    yield first
                    async for event in events:
                        yield event
                except StreamBroken:
                    metrics.provider_errors.labels(name, "stream_broken").inc()
                    raise
                finally:
                    await _close(events)
                return
        raise failure

    def _delay(self, attempt: int, failure: ProviderError) -> float | None:
        """Seconds before retry `attempt` (1-based); None when the provider asks for too long a wait."""
        backoff = min(self._policy.backoff_max, self._policy.backoff_base * 2.0 ** (attempt - 1))
        jittered = backoff * (0.5 + self._jitter() / 2)  # spread the retries of many turns apart
        retry_after = failure.retry_after if isinstance(failure, ProviderUnavailable) else None
        if retry_after is None:
            return jittered
        if retry_after > self._policy.max_retry_after:
            return None
        return max(retry_after, jittered)

    async def _first_event(
        self, events: AsyncIterator[ProviderEvent], route: Route
    ) -> tuple[Reported | None, ProviderEvent]:
        """The attempt's first answering event, and the usage it reported before it, if any."""
        reported: Reported | None = None
        try:
            async with asyncio.timeout(self._policy.first_token_timeout):
                while isinstance(event := await anext(events), Reported):
                    reported = event
                return reported, event
        except TimeoutError:
            await _close(events)
            timeout = self._policy.first_token_timeout
            raise FirstTokenTimeout(
                f"no token within {timeout} s", provider=route.provider.name, usage=_usage(reported)
            ) from None
        except StopAsyncIteration:
            raise ProviderUnavailable(
                "the stream ended without an answer", provider=route.provider.name, usage=_usage(reported)
            ) from None
        except ProviderError:
            await _close(events)
            raise


def _key(route: Route) -> tuple[str, str]:
    return route.provider.name, route.model


def _usage(reported: Reported | None) -> common_pb2.TokenUsage | None:
    return None if reported is None else reported.usage


def hold_routes(provider: LlmProvider, model: str) -> tuple[tuple[str, str], ...]:
    """(provider, model) of every route a call may take: a hold is priced at the dearest."""
    if isinstance(provider, ReliableProvider):
        return provider.routes(model)
    return ((provider.name, model),)


def billed_calls(provider: LlmProvider) -> int:
    """The most calls a provider's one `stream` may be billed for: a hold covers that many."""
    return provider.billed_calls if isinstance(provider, ReliableProvider) else 1


@dataclass(frozen=True, slots=True)
class HoldSize:
    """What a call's budget hold is asked for (`clients.Budget.reserve`)."""

    input_tokens: int
    max_output_tokens: int
    fallbacks: tuple[tuple[str, str], ...]  # the routes other than the asked one: held at the dearest


def hold_size(provider: LlmProvider, model: str, *, input_tokens: int, max_output_tokens: int) -> HoldSize:
    """The hold of one `stream` of `provider` bounded by these tokens: that many for each call it
    may be billed for (`billed_calls`), at the dearest route it may take (`hold_routes`)."""
    calls = billed_calls(provider)
    return HoldSize(input_tokens * calls, max_output_tokens * calls, hold_routes(provider, model)[1:])


async def _close(events: AsyncIterator[ProviderEvent]) -> None:
    # Providers are async generators; closing one releases its HTTP response at once.
    aclose: Callable[[], Awaitable[None]] | None = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
