"""Pure rules of usage-svc: prices, reservation bounds, budget arithmetic, report helpers."""

from datetime import UTC, datetime, timedelta

import pytest

from parley.kit.contracts import USAGE_RECORDED
from parley.kit.errors import InvalidInput
from parley.usage import budget, events, pricing, reports
from parley.usage.recording import Recorder
from parley.v1.common_pb2 import TokenUsage

SONNET = pricing.Price(
    model="claude-sonnet-4-5",
    input=3_000_000,
    output=15_000_000,
    cache_read=300_000,
    cache_write=3_750_000,
    cache_write_1h=6_000_000,
)
MINI = pricing.Price(model="gpt-4o-mini", input=150_000, output=600_000, cache_read=75_000, cache_write=150_000)
FREE = pricing.Price(model="local", input=0, output=0)


def test_cost_sums_every_kind_of_token_at_its_own_price() -> None:
    usage = TokenUsage(input_tokens=1_000, output_tokens=500, cache_read_tokens=10_000, cache_write_tokens=2_000)
    # 1000*3 + 500*15 + 10000*0.3 + 2000*3.75 micro-USD
    assert pricing.cost_micros(usage, SONNET) == 3_000 + 7_500 + 3_000 + 7_500


def test_cost_rounds_up_so_a_call_is_never_free_by_rounding() -> None:
    assert pricing.cost_micros(TokenUsage(input_tokens=1), MINI) == 1  # 0.15 micro-USD
    assert pricing.cost_micros(TokenUsage(input_tokens=7, output_tokens=1), MINI) == 2  # 1.65 micro-USD


def test_rounding_happens_once_on_the_sum() -> None:
    # 0.15 + 0.6 + 0.075 + 0.15 = 0.975 micro-USD: one micro, not four.
    usage = TokenUsage(input_tokens=1, output_tokens=1, cache_read_tokens=1, cache_write_tokens=1)
    assert pricing.cost_micros(usage, MINI) == 1


def test_no_tokens_and_free_models_cost_nothing() -> None:
    assert pricing.cost_micros(TokenUsage(), SONNET) == 0
    assert pricing.cost_micros(TokenUsage(input_tokens=10**9, output_tokens=10**9), FREE) == 0


def test_one_hour_writes_are_a_part_of_the_writes_billed_at_their_own_price() -> None:
    usage = TokenUsage(cache_write_tokens=2_000, cache_write_1h_tokens=500)
    # 1500*3.75 + 500*6 micro-USD
    assert pricing.cost_micros(usage, SONNET) == 5_625 + 3_000
    assert pricing.usage_problem(usage) == ""
    assert pricing.usage_problem(TokenUsage(cache_write_tokens=1, cache_write_1h_tokens=2))
    assert pricing.usage_problem(TokenUsage(cache_write_1h_tokens=-1))


def test_reservation_is_input_at_its_dearest_rate_plus_max_output_at_output_price() -> None:
    # Sonnet writes its cache for an hour at 2x plain input: a prompt written to cache whole for an
    # hour is the most it costs.
    assert pricing.reservation_micros(input_tokens=2_000, max_output_tokens=1_000, price=SONNET) == 12_000 + 15_000
    assert pricing.reservation_micros(input_tokens=1, max_output_tokens=0, price=MINI) == 1
    # No usage of those tokens costs more than the hold.
    for usage in (
        TokenUsage(input_tokens=2_000, output_tokens=1_000),
        TokenUsage(cache_write_tokens=2_000, output_tokens=1_000),
        TokenUsage(cache_read_tokens=1_000, cache_write_tokens=1_000, output_tokens=1_000),
        TokenUsage(cache_write_tokens=2_000, cache_write_1h_tokens=2_000, output_tokens=1_000),
    ):
        assert pricing.cost_micros(usage, SONNET) <= pricing.reservation_micros(
            input_tokens=2_000, max_output_tokens=1_000, price=SONNET
        )


def test_unknown_models_fall_back_to_default_except_the_offline_provider() -> None:
    assert pricing.fallback_model("openai") == pricing.DEFAULT_MODEL
    assert pricing.fallback_model("") == pricing.DEFAULT_MODEL
    assert pricing.fallback_model("local") == pricing.LOCAL_MODEL


def test_month_starts_at_midnight_utc_on_the_first() -> None:
    late_on_the_first = datetime(2025, 3, 1, 0, 30, tzinfo=UTC)
    assert budget.month_start(late_on_the_first) == datetime(2025, 3, 1, tzinfo=UTC)
    # Already March east of Greenwich, still February in UTC: the month is UTC's.
    assert budget.month_start(datetime(2025, 2, 28, 23, 0, tzinfo=UTC)) == datetime(2025, 2, 1, tzinfo=UTC)


def test_a_hold_may_reach_the_limit_but_not_pass_it() -> None:
    assert not budget.would_exceed(limit_micros=100, spent_micros=60, held_micros=30, amount_micros=10)
    assert budget.would_exceed(limit_micros=100, spent_micros=60, held_micros=30, amount_micros=11)
    assert not budget.would_exceed(limit_micros=None, spent_micros=10**12, held_micros=0, amount_micros=10**12)


def test_quota_is_allowed_while_something_is_left() -> None:
    assert budget.Quota(limit_micros=None, spent_micros=5, reserved_micros=5).allowed
    assert budget.Quota(limit_micros=100, spent_micros=50, reserved_micros=49).allowed
    assert not budget.Quota(limit_micros=100, spent_micros=50, reserved_micros=50).allowed


def test_ids_that_are_not_uuids_are_recognised() -> None:
    assert budget.parse_id("not-a-uuid") is None
    assert budget.parse_id("6F9619FF-8B86-D011-B42D-00C04FC964FF") == "6f9619ff-8b86-d011-b42d-00c04fc964ff"


def test_usage_window_defaults_to_the_last_thirty_days() -> None:
    now = datetime(2025, 6, 30, 12, tzinfo=UTC)
    assert reports.resolve_window(since=None, until=None, now=now) == (now - timedelta(days=30), now)
    with pytest.raises(InvalidInput):
        reports.resolve_window(since=now, until=now - timedelta(hours=1), now=now)


def test_summary_windows_are_24h_and_7d_only() -> None:
    assert reports.summary_window("24h") == timedelta(hours=24)
    assert reports.summary_window("7d") == timedelta(days=7)
    with pytest.raises(InvalidInput):
        reports.summary_window("30d")


def test_cache_hit_rate_is_cache_reads_over_prompt_tokens() -> None:
    assert reports.cache_hit_rate(input_tokens=250, cache_read_tokens=750) == 0.75
    assert reports.cache_hit_rate(input_tokens=0, cache_read_tokens=0) == 0.0


def test_csv_cells_cannot_become_spreadsheet_formulas() -> None:
    lines = reports.csv_lines([("=HYPERLINK(1)", -5, True)], header=False).decode()
    assert lines == "'=HYPERLINK(1),-5,true\r\n"


def test_the_recorder_consumes_the_subject_events_declares(recorder: Recorder) -> None:
    assert [consumer.subject for consumer in events.consumers(recorder=recorder)] == [USAGE_RECORDED]
    assert events.CONSUMES == (USAGE_RECORDED,)
