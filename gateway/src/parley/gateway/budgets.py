"""Budgets the gateway holds before anything is spent: a user's and an API key's monthly limits
(hard), and soft alerts for a key's, a user's and the tenant's spend. The tenant's hard monthly limit is usage-svc's
(`Reserve` holds every call's upper bound; a refusal is a 402 from the backend).

Checked on every route that spends — a chat turn (`/v1/chat`, the OpenAI-compatible chat
completions, MCP's `ask`), a search or an embedding (`/v1/search`, `/v1/embeddings`, MCP's
`search`), artifacts written on request — before the backend is called:

- **hard, per user**: month-to-date spend (usage-svc's events of that user, every kind: turns,
  embeddings, summaries) at or past the user's `monthly_limit_usd` is `402 budget_exceeded`.
  It is a check, not a hold: calls already running finish and are billed, so a user may pass the
  limit by what was in flight; the tenant's limit, held per call by usage-svc, is the one that
  never overruns.
- **hard, per API key**: the same, for the calls made with the key (usage events carry the key
  from the signed identity, kit.identity): a key at or past its `monthly_limit_usd` is refused
  while its user's other keys go on. A single sign-on token has no key, so only its user's and
  the tenant's budgets hold it.
- **hard, per tenant, for search**: a search embeds its query (billed to the tenant without a
  hold); a tenant with nothing left (`CheckQuota.allowed` false) is refused with 402 first.
- **soft**: spend at or past a key's, a user's or the tenant's `alert_at_usd` publishes a
  `BudgetAlert` event on `alerts.budget.<tenant>` and counts
  `parley_gateway_budget_alerts_total{scope}` (`key`, `user`, `tenant`), once per scope, id and
  month on each replica.
"""

import logging
from datetime import UTC, datetime
from typing import Any

import grpc
from prometheus_client import Counter

from parley.gateway import store
from parley.gateway.errors import ApiError
from parley.gateway.schemas import usd
from parley.gateway.store import Principal
from parley.kit.contracts import budget_alert_subject
from parley.kit.timestamps import to_timestamp
from parley.v1 import events_pb2, usage_pb2

log = logging.getLogger(__name__)

budget_alerts = Counter(
    "parley_gateway_budget_alerts_total", "Soft budget thresholds found crossed (once per scope and month)", ["scope"]
)
_GROUP_BY = {"user": usage_pb2.USAGE_GROUP_BY_USER, "key": usage_pb2.USAGE_GROUP_BY_API_KEY}
budget_refusals = Counter(
    "parley_gateway_budget_refusals_total", "Calls refused by a budget before spending", ["scope"]
)


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


class Budgets:
    def __init__(self) -> None:
        # (scope, id, month) already alerted by this replica.
        self._alerted: set[tuple[str, str, str]] = set()

    async def before_spending(self, services: Any, who: Principal, *, embeds_query: bool = False) -> None:
        """Refuse (402) before anything is spent when the key's or the user's budget is spent
        (or, for a search, the tenant has nothing left); publish the soft alerts found crossed."""
        async with store.tenant_transaction(services.sessions, who.tenant_id) as session:
            limits = await store.spending_limits(
                session=session, tenant_id=who.tenant_id, user_id=who.user_id, api_key_id=who.api_key_id
            )
        try:
            if who.api_key_id is not None:
                await self._hold(services, who, "key", who.api_key_id, limits.key_limit_micros, limits.key_alert_micros)
            await self._hold(services, who, "user", who.user_id, limits.user_limit_micros, limits.user_alert_micros)
            if limits.tenant_alert_micros is not None or embeds_query:
                quota = await services.usage.check_quota(who)
                committed = quota.spent_micros + quota.reserved_micros
                if limits.tenant_alert_micros is not None and committed >= limits.tenant_alert_micros:
                    limit = quota.limit_micros if quota.HasField("limit_micros") else None
                    await self._alert(services, who, "tenant", committed, limits.tenant_alert_micros, limit)
                if embeds_query and not quota.allowed:
                    budget_refusals.labels("tenant").inc()
                    raise ApiError(402, "budget_exceeded", "the tenant's monthly budget is spent")
        except grpc.aio.AioRpcError as error:
            # usage-svc unreachable: the check is skipped, not the call. What spends through a
            # hold (a turn, artifacts) cannot start without usage-svc anyway; a search's query
            # embedding is billed all the same.
            log.warning("budget check skipped: usage-svc answered %s", error.code().name)

    async def _hold(
        self, services: Any, who: Principal, scope: str, spender: str, limit: int | None, alert_at: int | None
    ) -> None:
        """The month-to-date spend of one user or key (usage-svc's events grouped by it) against
        its limit (402) and alert."""
        if limit is None and alert_at is None:
            return
        now = datetime.now(UTC)
        usage = await services.usage.get_usage(
            who,
            usage_pb2.GetUsageRequest(
                since=to_timestamp(month_start(now)), until=to_timestamp(now), group_by=_GROUP_BY[scope]
            ),
        )
        spent = next((row.cost_micros for row in usage.rows if row.group == spender), 0)
        if alert_at is not None and spent >= alert_at:
            await self._alert(services, who, scope, spent, alert_at, limit)
        if limit is not None and spent >= limit:
            budget_refusals.labels(scope).inc()
            whose = "this API key's" if scope == "key" else "your"
            raise ApiError(
                402,
                "budget_exceeded",
                f"{whose} monthly budget (${usd(limit):.2f}) is spent: ${usd(spent):.2f} this month",
            )

    async def _alert(
        self, services: Any, who: Principal, scope: str, spent: int, alert_at: int, limit: int | None
    ) -> None:
        month = month_start(datetime.now(UTC)).strftime("%Y-%m")
        whose = {"user": who.user_id, "key": who.api_key_id or ""}.get(scope, who.tenant_id)
        key = (scope, whose, month)
        if key in self._alerted:
            return
        self._alerted.add(key)
        budget_alerts.labels(scope).inc()
        alert = events_pb2.BudgetAlert(
            tenant_id=who.tenant_id,
            scope=scope,
            user_id=who.user_id if scope in ("user", "key") else "",
            api_key_id=(who.api_key_id or "") if scope == "key" else "",
            spent_micros=spent,
            alert_at_micros=alert_at,
            limit_micros=limit,
            at=to_timestamp(datetime.now(UTC)),
        )
        log.warning("budget alert", extra={"fields": {"scope": scope, "spent_micros": spent, "alert_at": alert_at}})
        try:
            await services.nc.publish(budget_alert_subject(who.tenant_id), alert.SerializeToString())
        except Exception:  # the metric and the log line stand; a lost alert event is not a lost call
            log.warning("could not publish a budget alert", exc_info=True)
