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
from parley.chat.providers.base import LlmProvider, ProviderEvent
from parley.chat.providers.errors import (
    FirstTokenTimeout,
    ProviderError,
    ProviderRefused,
    ProviderUnavailable,
    StreamBroken,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    first_token_timeout: float = 25.0
    retries: int = 3
    backoff_base: float = 0.5  # before the first retry; doubled for each one after
    backoff_max: float = 8.0
    max_retry_after: float = 30.0


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
        return self._primary.count_tokens(prompt, model=model)

    async def close(self) -> None:
        await self._primary.close()

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        failure: ProviderError = ProviderUnavailable("no route was tried", provider=self.name)
        asked = Route(self._primary, model)
        routes = [asked, *(route for route in self._fallbacks if _key(route) != _key(asked))]
        for position, route in enumerate(routes):
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
                events = route.provider.stream(prompt, model=route.model, max_tokens=max_tokens)
                try:
                    first = await self._first_event(events, route)
                except ProviderUnavailable as error:
                    failure = error
                    code = "first_token_timeout" if isinstance(error, FirstTokenTimeout) else "unavailable"
                    metrics.provider_errors.labels(name, code).inc()
                    log.warning("%s/%s unavailable (attempt %d): %s", name, route.model, attempt + 1, error)
                    continue
                except ProviderRefused as error:
                    failure = error
                    metrics.provider_errors.labels(name, "refused").inc()
                    log.warning("%s/%s refused the request: %s", name, route.model, error)
                    break
                try:
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

    async def _first_event(self, events: AsyncIterator[ProviderEvent], route: Route) -> ProviderEvent:
        try:
            async with asyncio.timeout(self._policy.first_token_timeout):
                return await anext(events)
        except TimeoutError:
            await _close(events)
            timeout = self._policy.first_token_timeout
            raise FirstTokenTimeout(f"no token within {timeout} s", provider=route.provider.name) from None
        except StopAsyncIteration:
            raise ProviderUnavailable("the stream ended without an answer", provider=route.provider.name) from None
        except ProviderError:
            await _close(events)
            raise


def _key(route: Route) -> tuple[str, str]:
    return route.provider.name, route.model


async def _close(events: AsyncIterator[ProviderEvent]) -> None:
    # Providers are async generators; closing one releases its HTTP response at once.
    aclose: Callable[[], Awaitable[None]] | None = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
