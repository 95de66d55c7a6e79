"""Which price row a call is billed at, and what its usage costs there: the one lookup the
Recorder bills with, Budgets holds with and PriceUsage answers with."""

from sqlalchemy.ext.asyncio import AsyncSession

from parley.kit.db import Sessions
from parley.usage import pricing, store
from parley.usage.pricing import Price
from parley.v1.common_pb2 import TokenUsage


async def price_row(*, session: AsyncSession, provider: str, model: str) -> Price:
    """The model's row, else the fallback row its provider is billed at."""
    return await store.get_price(session=session, model=model, fallback=pricing.fallback_model(provider))


async def usage_cost(*, session: AsyncSession, provider: str, model: str, usage: TokenUsage) -> int:
    return pricing.cost_micros(usage, await price_row(session=session, provider=provider, model=model))


class Prices:
    """What a call's usage costs, for callers that show it before usage-svc records it."""

    def __init__(self, *, sessions: Sessions) -> None:
        self._sessions = sessions

    async def cost(self, *, provider: str, model: str, usage: TokenUsage) -> int:
        async with self._sessions() as session:
            return await usage_cost(session=session, provider=provider, model=model, usage=usage)
