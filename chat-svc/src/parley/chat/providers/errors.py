"""How a remote LLM provider fails, in the terms a turn acts on, whatever the SDK said.

    ProviderError             `usage`: what the provider reported for the failed call, if anything
    ├── ProviderUnavailable   before the first token; another attempt may succeed
    │   │                     (429, 408, 409, 5xx, 529 overloaded, connection lost, timeout)
    │   └── FirstTokenTimeout no token within the first-token timeout
    ├── ProviderRefused       before the first token; the same request will fail again
    │                         (auth, permission, invalid request, unknown model, a spend limit)
    └── StreamBroken          after the first token: never retried; carries the usage to bill

Each provider translates its SDK's exceptions into these at its edge, and `reliability`
decides on them, so retries and fallback do not depend on which SDK is behind a provider.

A call may fail before its first token after the provider reported usage for it (Anthropic's
`message_start` carries the input and cache figures, then the stream breaks): that usage is
billed, so a `ProviderUnavailable` or `ProviderRefused` carries it in `usage` (None when the
provider reported nothing, which it does not bill), and `reliability` bills each such attempt.
"""

from collections.abc import Mapping

from parley.v1 import common_pb2


class ProviderError(Exception):
    def __init__(self, message: str, *, provider: str, usage: common_pb2.TokenUsage | None = None) -> None:
        super().__init__(message)
        self.provider = provider
        self.usage = usage  # what the provider reported for the call before it failed: billed


class ProviderUnavailable(ProviderError):
    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retry_after: float | None = None,
        usage: common_pb2.TokenUsage | None = None,
    ) -> None:
        super().__init__(message, provider=provider, usage=usage)
        self.retry_after = retry_after  # seconds, as the provider asked in `retry-after`


class FirstTokenTimeout(ProviderUnavailable):
    pass


class ProviderRefused(ProviderError):
    pass


class StreamBroken(ProviderError):
    """The answer stopped after it began; the text already streamed is the partial answer.

    `usage` is what to bill for it. `usage_estimated` is true when the provider died before
    reporting usage, so the figures are our own count (cl100k) of the prompt and the text received.
    """

    def __init__(
        self, message: str, *, provider: str, model: str, usage: common_pb2.TokenUsage, usage_estimated: bool
    ) -> None:
        super().__init__(message, provider=provider, usage=usage)
        self.model = model
        self.usage: common_pb2.TokenUsage = usage
        self.usage_estimated = usage_estimated


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms` (both vendors send it), else `retry-after` in seconds; dates are not used."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None


# Worth another attempt: timeouts, lock conflicts, rate limits, server errors, 529 overloaded.
TRANSIENT_STATUSES = frozenset({408, 409, 429})


def classify_status(
    message: str,
    *,
    provider: str,
    status: int,
    headers: Mapping[str, str],
    permanent: bool = False,
    usage: common_pb2.TokenUsage | None = None,
) -> ProviderError:
    """An HTTP error before the first token; `permanent` when the body says no retry can help;
    `usage` what the provider reported of the call before it failed, if anything."""
    # Both vendors may say so outright; the SDKs obey this header too.
    told = headers.get("x-should-retry")
    transient = status in TRANSIENT_STATUSES or status >= 500
    if permanent or told == "false" or not (transient or told == "true"):
        return ProviderRefused(message, provider=provider, usage=usage)
    return ProviderUnavailable(message, provider=provider, retry_after=retry_after_seconds(headers), usage=usage)
