"""Rate limits shared by every gateway replica: requests per minute and LLM tokens per minute,
per API key and per user, counted in PostgreSQL.

Why PostgreSQL and not NATS JetStream KV: every `/v1` request already reads its key from the
gateway's database, so the counters add no dependency that can fail on its own (a limiter that
is down while authentication is up would have to choose between refusing everyone and admitting
everyone); one `INSERT … ON CONFLICT DO UPDATE … RETURNING` adds to every bucket of a request
atomically in one round trip, where KV would need a compare-and-set loop per bucket that retries
under exactly the contention a limit exists for. The table is UNLOGGED: no WAL for a counter, and
a crash of PostgreSQL forgets at most one minute of counts.

Windows are fixed minutes (UTC, on the database's clock). A request is counted in every bucket
that applies to it before it is admitted, so across any number of replicas no bucket admits more
than its limit in a window; a refused request is counted too (a client that hammers stays
refused until the window ends). LLM tokens are known only after a turn: a turn is admitted while
its buckets' tokens are under the limit, and its tokens are added when it ends.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.gateway import store
from parley.gateway.access import Principal
from parley.gateway.errors import ApiError
from parley.kit.db import Sessions

log = logging.getLogger(__name__)

WINDOW = timedelta(minutes=1)
# Every this many counts, a replica deletes windows that ended: no background task to run.
_SWEEP_EVERY = 500


@dataclass(frozen=True, slots=True)
class Limits:
    """A tenant's limits, per minute, each per key and per user; the installation's defaults
    fill what the tenant did not set."""

    requests_per_minute: int
    chat_requests_per_minute: int
    llm_tokens_per_minute: int


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    limit: int
    remaining: int
    reset_seconds: int
    what: str = ""

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(self.reset_seconds),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.reset_seconds)
        return headers

    def refusal(self) -> ApiError:
        """The 429 every refused request gets, whichever limit refused it."""
        message = f"too many {self.what}: {self.limit} a minute; retry in {self.reset_seconds} s"
        return ApiError(429, "rate_limited", message, headers=self.headers())


def _buckets(who: Principal, kind: str) -> list[str]:
    # A JWT caller has no key: the user bucket alone holds them.
    owners = [f"user:{who.user_id}"] + ([f"key:{who.api_key_id}"] if who.api_key_id else [])
    return sorted(f"{owner}:{kind}" for owner in owners)


async def _window(session: AsyncSession) -> tuple[datetime, datetime]:
    """The current window's start and the time, by the database's clock, so replicas whose
    clocks drift still share windows."""
    now: datetime = (await session.execute(select(func.now()))).scalar_one()
    now = now.astimezone(UTC)
    return now.replace(second=0, microsecond=0), now


def _seconds_left(now: datetime) -> int:
    """Seconds until the window that holds `now` ends (for Retry-After and RateLimit-Reset)."""
    start = now.astimezone(UTC).replace(second=0, microsecond=0)
    return max(1, int((start + WINDOW - now).total_seconds() + 0.999))


class RateLimiter:
    def __init__(self) -> None:
        self._counted = 0

    async def admit(self, session: AsyncSession, who: Principal, limits: Limits, *, chat: bool) -> Verdict:
        """Count this request in its buckets and say whether it may go on (every bucket within
        its limit); the verdict describes the tightest bucket, for the RateLimit-* headers."""
        return (await self.admit_many(session, who, limits, chat=chat, requests=1))[0]

    async def admit_many(
        self, session: AsyncSession, who: Principal, limits: Limits, *, chat: bool, requests: int
    ) -> list[Verdict]:
        """`admit` for `requests` requests of one caller that arrived together: each bucket is
        counted once, by all of them, and each request is given its own place in the count (the
        k-th of them is admitted exactly when k requests alone would have been). Every bucket is
        counted in one statement."""
        checks = [("req", limits.requests_per_minute)] if limits.requests_per_minute > 0 else []
        if chat and limits.chat_requests_per_minute > 0:
            checks.append(("chat", limits.chat_requests_per_minute))
        tokens_limited = chat and limits.llm_tokens_per_minute > 0
        if not checks and not tokens_limited:  # nothing to count: no round trip
            return [Verdict(True, 0, 0, _seconds_left(datetime.now(UTC)))] * requests
        buckets = sorted(bucket for kind, _ in checks for bucket in _buckets(who, kind))
        if buckets:
            counted = await store.count_now(session=session, buckets=buckets, amount=requests)
            start, now, totals = counted.window_start, counted.now, counted.totals
        else:
            start, now, totals = *await _window(session), {}
        reset = _seconds_left(now)
        tightest: list[Verdict | None] = [None] * requests
        for kind, limit in checks:
            what = "chat requests" if kind == "chat" else "requests"
            for bucket in _buckets(who, kind):
                for place in range(requests):
                    remaining = limit - (totals[bucket] - requests + 1 + place)
                    found = tightest[place]
                    if found is None or remaining < found.remaining:
                        tightest[place] = Verdict(remaining >= 0, limit, max(remaining, 0), reset, what)
        if tokens_limited:
            used = await store.read_window(session=session, buckets=_buckets(who, "tokens"), window_start=start)
            if max(used.values(), default=0) >= limits.llm_tokens_per_minute:
                tightest = [Verdict(False, limits.llm_tokens_per_minute, 0, reset, "LLM tokens")] * requests
        swept = self._counted // _SWEEP_EVERY
        self._counted += requests
        if self._counted // _SWEEP_EVERY != swept:
            await store.forget_windows_before(session=session, before=start - WINDOW)
        verdict = Verdict(True, limits.requests_per_minute, limits.requests_per_minute, reset)
        return [found or verdict for found in tightest]

    async def admit_address(self, session: AsyncSession, address: str, *, what: str, limit: int) -> Verdict:
        """Count a request no credential stands behind (a public route that costs something) in
        its client address's bucket for `what`."""
        counted = await store.count_now(session=session, buckets=[f"address:{address}:{what}"], amount=1)
        [total] = counted.totals.values()
        return Verdict(total <= limit, limit, max(limit - total, 0), _seconds_left(counted.now), what)

    async def charge_tokens(self, sessions: Sessions, who: Principal, tokens: int) -> None:
        """Add a finished turn's tokens to its buckets' current window (one statement)."""
        if tokens <= 0:
            return
        try:
            async with sessions.begin() as session:
                await store.count_now(session=session, buckets=_buckets(who, "tokens"), amount=tokens)
        except Exception:  # the answer is given; a lost count is logged, not raised
            log.warning("could not count a turn's tokens against the rate limit", exc_info=True)
