"""The Anthropic and OpenAI providers, through the official SDKs, against HTTP fakes of the two APIs.

What a turn relies on: the text streams, usage lands in the same four counters from both
vendors, Anthropic's prompt cache is written then read across turns, failures before the first
token are retried or fall back, and failures after it are not retried but billed.
"""

import dataclasses

import pytest

from parley.chat.context_builder import INSTRUCTIONS, Passage, Prompt, Turn, build_prompt
from parley.chat.providers import (
    AnthropicProvider,
    FailedAttempt,
    Finished,
    FirstTokenTimeout,
    LlmProvider,
    OpenAIProvider,
    ProviderEvent,
    ProviderRefused,
    ProviderUnavailable,
    ReliableProvider,
    Reported,
    RetryPolicy,
    Route,
    StreamBroken,
    TextDelta,
    billed_calls,
    hold_routes,
    prompt_tokens,
)
from parley.chat.providers.anthropic import messages
from parley.kit.tokens import count_tokens
from parley.v1 import common_pb2, retrieval_pb2
from tests.fakes.anthropic_server import FakeAnthropic, Served
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.scripting import DEFAULT_ANSWER, Script

SONNET = "claude-sonnet-4-6"
HAIKU = "claude-haiku-4-5"
FAST = RetryPolicy(first_token_timeout=2.0, backoff_base=0.001, backoff_max=0.01)


def passage(index: int, topic: str, sentences: int) -> Passage:
    text = " ".join(f"Sentence {n} of the {topic} manual explains step {n} in plain words." for n in range(sentences))
    hit = retrieval_pb2.ChunkHit(chunk_id=f"c{index}", document_title=f"{topic} manual", text=text)
    return Passage(index=index, hit=hit)


def prompt(question: str, *, topic: str = "espresso", sentences: int = 120, history: tuple[Turn, ...] = ()) -> Prompt:
    """About 1,800 tokens of passages at the default size (sent with the question): above Sonnet's
    1,024 minimum."""
    return Prompt(INSTRUCTIONS, (passage(1, topic, sentences),), history, question, sent_passages=1)


async def answered(provider: LlmProvider, asked: Prompt, *, model: str, max_tokens: int = 200) -> tuple[str, Finished]:
    text = ""
    async for event in provider.stream(asked, model=model, max_tokens=max_tokens):
        if isinstance(event, TextDelta):
            text += event.text
        elif isinstance(event, Finished):
            return text, event
    raise AssertionError("the stream ended without Finished")


async def events_of(provider: LlmProvider, asked: Prompt, *, model: str) -> list[ProviderEvent]:
    return [event async for event in provider.stream(asked, model=model, max_tokens=200)]


def as_usage(served: Served) -> common_pb2.TokenUsage:
    """What the fake reported for a call, in our counters."""
    return common_pb2.TokenUsage(
        input_tokens=served.usage.input_tokens,
        output_tokens=served.output_tokens,
        cache_read_tokens=served.usage.cache_read_input_tokens,
        cache_write_tokens=served.usage.cache_creation_input_tokens,
    )


async def answer(
    provider: LlmProvider, asked: Prompt, *, model: str, max_tokens: int = 200
) -> tuple[str, common_pb2.TokenUsage]:
    text, finished = await answered(provider, asked, model=model, max_tokens=max_tokens)
    return text, finished.usage


def total_input(usage: common_pb2.TokenUsage) -> int:
    return usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens


async def test_claude_streams_the_answer_and_writes_the_stable_prefix_to_the_cache(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    asked = prompt("How often is the boiler descaled?")
    text, finished = await answered(claude, asked, model=SONNET)
    usage = finished.usage

    assert text == DEFAULT_ANSWER
    assert usage.output_tokens == count_tokens(DEFAULT_ANSWER)
    assert (finished.finish_reason, finished.provider, finished.model) == ("stop", "anthropic", SONNET)
    # Turn 1: everything through the last breakpoint (the question) is written, nothing read.
    assert usage.cache_read_tokens == 0
    assert usage.cache_write_tokens == total_input(usage) > 1024
    assert usage.input_tokens == 0

    sent = anthropic_fake.received[-1].body
    assert sent["model"] == SONNET and sent["stream"] is True and sent["max_tokens"] == 200
    assert [block["text"] for block in sent["system"]] == [INSTRUCTIONS]
    # The instructions alone are under Sonnet's 1,024-token minimum (MIN_CACHEABLE_TOKENS): no
    # breakpoint there, where the API would ignore it; the turn's text (passages and question) has one.
    assert "cache_control" not in sent["system"][0]
    turn_text = {"type": "text", "text": asked.turn_text(), "cache_control": {"type": "ephemeral"}}
    assert sent["messages"] == [{"role": "user", "content": [turn_text]}]
    assert asked.turn_text() == f"{asked.passages[0].render()}\n\n{asked.question}"


async def test_the_next_turn_reads_the_identical_prefix_from_the_cache(claude: AnthropicProvider) -> None:
    first = prompt("How often is the boiler descaled?")
    _, turn1 = await answer(claude, first, model=SONNET)
    history = (Turn("user", first.turn_text()), Turn("assistant", DEFAULT_ANSWER))
    _, turn2 = await answer(claude, Prompt(INSTRUCTIONS, (), history, "And with what?"), model=SONNET)

    # Instructions and the first question as sent (its passage with it) are read back; the answer
    # and the new question are what is written.
    assert turn2.cache_read_tokens == turn1.cache_write_tokens
    assert turn2.cache_write_tokens == count_tokens(DEFAULT_ANSWER) + count_tokens("And with what?")
    assert turn2.input_tokens == 0


async def test_other_passages_or_another_model_read_nothing(claude: AnthropicProvider) -> None:
    await answer(claude, prompt("How often is the boiler descaled?"), model=SONNET)
    _, other_passages = await answer(claude, prompt("How often?", topic="grinder"), model=SONNET)
    _, other_model = await answer(claude, prompt("How often is the boiler descaled?"), model="claude-opus-5")
    assert other_passages.cache_read_tokens == 0 and other_passages.cache_write_tokens > 0
    assert other_model.cache_read_tokens == 0


async def test_a_prompt_below_the_minimum_cacheable_length_is_neither_written_nor_read(
    claude: AnthropicProvider,
) -> None:
    short = prompt("How often is the boiler descaled?", sentences=60)  # ~900 tokens: under 1,024
    for _ in range(2):
        _, usage = await answer(claude, short, model=SONNET)
        assert usage.cache_read_tokens == usage.cache_write_tokens == 0
        assert 0 < usage.input_tokens < 1024
    # Haiku 4.5 needs 4,096: a prompt Sonnet would cache is not cached for it.
    _, haiku = await answer(claude, prompt("How often is the boiler descaled?"), model=HAIKU)
    assert haiku.cache_write_tokens == 0
    # Opus 5 caches from 512: the prompt too short for Sonnet is written for it.
    _, opus = await answer(claude, short, model="claude-opus-5")
    assert opus.cache_write_tokens == total_input(opus) > 512


async def test_the_cache_lives_five_minutes_from_its_last_use(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    asked = prompt("How often is the boiler descaled?")
    await answer(claude, asked, model=SONNET)
    anthropic_fake.advance_clock(240)
    _, refreshed = await answer(claude, asked, model=SONNET)
    anthropic_fake.advance_clock(240)  # 8 minutes after the write, 4 after the read
    _, still = await answer(claude, asked, model=SONNET)
    anthropic_fake.advance_clock(301)
    _, expired = await answer(claude, asked, model=SONNET)
    assert refreshed.cache_read_tokens > 0 and still.cache_read_tokens > 0
    assert expired.cache_read_tokens == 0 and expired.cache_write_tokens > 0


async def test_gpt_streams_the_answer_and_takes_cached_tokens_out_of_the_input(
    gpt: OpenAIProvider, openai_fake: FakeOpenAI
) -> None:
    asked = prompt("How often is the boiler descaled?")
    text, finished = await answered(gpt, asked, model="gpt-x", max_tokens=5)
    first = finished.usage
    _, second = await answer(gpt, asked, model="gpt-x", max_tokens=5)

    assert text == "The boiler is descaled"  # five tokens
    assert (finished.finish_reason, finished.provider, finished.model) == ("length", "openai", "gpt-x")
    assert first.output_tokens == 5
    assert first.cache_read_tokens == 0
    # prompt_tokens includes cached_tokens: the uncached rest is billed as input, once.
    assert second.cache_read_tokens >= 1024
    assert second.input_tokens == first.input_tokens - second.cache_read_tokens
    assert total_input(second) == total_input(first)

    sent = openai_fake.received[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["max_completion_tokens"] == 5
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    assert sent["messages"][0]["content"] == INSTRUCTIONS
    assert sent["messages"][1]["content"] == asked.turn_text()  # what the next turn sends as history


async def test_a_retry_storm_before_the_first_token_ends_in_the_answer(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(Script.reject(429, retry_after=0.05), Script.reject(529), Script.reject(500))
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    reliable = ReliableProvider(claude, policy=FAST, sleep=sleep)
    text, finished = await answered(reliable, prompt("How often?"), model=SONNET)

    assert text == DEFAULT_ANSWER
    assert (finished.provider, finished.model) == ("anthropic", SONNET)
    assert len(anthropic_fake.received) == 4
    assert slept[0] >= 0.05, "retry-after is honoured"
    assert all(wait <= FAST.backoff_max for wait in slept[1:])


async def test_a_storm_that_outlasts_the_retries_falls_back(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic, gpt: OpenAIProvider, openai_fake: FakeOpenAI
) -> None:
    anthropic_fake.script(*[Script.reject(529)] * 4)
    reliable = ReliableProvider(claude, fallbacks=[Route(gpt, "gpt-x")], policy=FAST)
    text, finished = await answered(reliable, prompt("How often?"), model=SONNET)

    assert text == DEFAULT_ANSWER
    assert (finished.provider, finished.model) == ("openai", "gpt-x")
    assert len(anthropic_fake.received) == 1 + FAST.retries
    assert len(openai_fake.received) == 1


async def test_a_provider_asking_to_wait_too_long_goes_straight_to_the_fallback(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script(Script.reject(429, retry_after=120))
    reliable = ReliableProvider(claude, fallbacks=[Route(claude, HAIKU)], policy=FAST)
    _, finished = await answered(reliable, prompt("How often?"), model=SONNET)
    assert finished.model == HAIKU
    assert [r.body["model"] for r in anthropic_fake.received] == [SONNET, HAIKU]


async def test_an_auth_error_is_not_retried(anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.reset()
    wrong_key = AnthropicProvider(api_key="wrong", base_url=anthropic_fake.base_url, default_model=SONNET)
    reliable = ReliableProvider(wrong_key, policy=FAST)
    with pytest.raises(ProviderRefused):
        await answer(reliable, prompt("How often?"), model=SONNET)
    assert len(anthropic_fake.received) == 1
    await wrong_key.close()


async def test_a_spend_limit_is_not_retried(gpt: OpenAIProvider, openai_fake: FakeOpenAI) -> None:
    openai_fake.script(Script.reject(429, error_code="insufficient_quota"))
    with pytest.raises(ProviderRefused):
        await answer(ReliableProvider(gpt, policy=FAST), prompt("How often?"), model="gpt-x")
    assert len(openai_fake.received) == 1


@pytest.mark.parametrize("failure", ["error_event", "disconnect"])
async def test_a_failure_after_the_first_token_is_not_retried_and_bills_what_was_produced(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic, failure: str
) -> None:
    anthropic_fake.script(Script.break_after(4, failure="disconnect" if failure == "disconnect" else "error_event"))
    reliable = ReliableProvider(claude, fallbacks=[Route(claude, HAIKU)], policy=FAST)
    received = ""
    with pytest.raises(StreamBroken) as broken:
        async for event in reliable.stream(prompt("How often?"), model=SONNET, max_tokens=200):
            assert isinstance(event, TextDelta | Reported)
            received += event.text if isinstance(event, TextDelta) else ""

    assert received == "The boiler is des"
    assert len(anthropic_fake.received) == 1
    usage = broken.value.usage
    assert usage.output_tokens == 4
    assert total_input(usage) == count_tokens(INSTRUCTIONS) + count_tokens(prompt("How often?").turn_text())
    assert broken.value.model == SONNET


async def test_gpt_failing_mid_answer_estimates_the_usage_it_never_reported(
    gpt: OpenAIProvider, openai_fake: FakeOpenAI
) -> None:
    openai_fake.script(Script.break_after(3, failure="disconnect"))
    asked = prompt("How often?")
    with pytest.raises(StreamBroken) as broken:
        await answer(ReliableProvider(gpt, policy=FAST), asked, model="gpt-x")
    assert broken.value.usage_estimated
    assert broken.value.usage.input_tokens == prompt_tokens(asked)
    assert broken.value.usage.output_tokens == count_tokens("The boiler is")
    assert len(openai_fake.received) == 1


async def test_no_first_token_in_time_is_retried_then_given_up(gpt: OpenAIProvider, openai_fake: FakeOpenAI) -> None:
    policy = RetryPolicy(first_token_timeout=0.2, retries=1, backoff_base=0.001)
    openai_fake.script(Script.stall(1.0), Script(first_token_delay=0.05))
    text, _ = await answer(ReliableProvider(gpt, policy=policy), prompt("How often?"), model="gpt-x")
    assert text == DEFAULT_ANSWER
    assert len(openai_fake.received) == 2

    openai_fake.script(Script.stall(1.0), Script.stall(1.0))
    with pytest.raises(FirstTokenTimeout):
        await answer(ReliableProvider(gpt, policy=policy), prompt("How often?"), model="gpt-x")


async def test_claude_reports_the_input_side_before_the_first_token(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.reset()
    events = await events_of(ReliableProvider(claude, policy=FAST), prompt("Reported?"), model=SONNET)

    assert isinstance(events[0], Reported) and isinstance(events[1], TextDelta)
    [served] = anthropic_fake.served
    assert events[0].usage == common_pb2.TokenUsage(
        input_tokens=served.usage.input_tokens,
        output_tokens=1,
        cache_read_tokens=served.usage.cache_read_input_tokens,
        cache_write_tokens=served.usage.cache_creation_input_tokens,
    )
    assert (events[0].provider, events[0].model) == ("anthropic", SONNET)


@pytest.mark.parametrize("failure", ["error_event", "disconnect"])
async def test_a_stream_broken_after_message_start_is_a_failed_attempt_billed_at_its_own_model(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic, failure: str
) -> None:
    """Anthropic bills the input it reported in message_start even though no text came: the attempt
    is yielded with that usage, priced as its own model (here Sonnet, before a fall back to Haiku)."""
    anthropic_fake.reset()
    how = "disconnect" if failure == "disconnect" else "error_event"
    anthropic_fake.script(Script.break_after(0, failure=how), Script.reject(529))
    policy = RetryPolicy(first_token_timeout=2.0, retries=1, backoff_base=0.001, backoff_max=0.01)
    reliable = ReliableProvider(claude, fallbacks=[Route(claude, HAIKU)], policy=policy)
    events = await events_of(reliable, prompt("Broken?"), model=SONNET)

    failed = [event for event in events if isinstance(event, FailedAttempt)]
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.model == HAIKU
    broken, answered_by = anthropic_fake.served  # the 529 served nothing
    assert [(f.provider, f.model, f.number) for f in failed] == [("anthropic", SONNET, 1)]
    assert failed[0].usage == as_usage(broken)
    assert finished.usage == as_usage(answered_by)
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == DEFAULT_ANSWER


async def test_attempts_billed_before_failing_are_retried_only_as_far_as_a_hold_covers(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.reset()
    anthropic_fake.script(*[Script.break_after(0)] * 4)
    policy = RetryPolicy(first_token_timeout=2.0, retries=3, backoff_base=0.001, backoff_max=0.01, paid_retries=1)
    reliable = ReliableProvider(claude, fallbacks=[Route(claude, HAIKU)], policy=policy)
    failed: list[FailedAttempt] = []
    with pytest.raises(ProviderUnavailable):
        async for event in reliable.stream(prompt("Broken?"), model=SONNET, max_tokens=200):
            assert isinstance(event, FailedAttempt)
            failed.append(event)

    # Two calls billed (the hold covers billed_calls = 2), not four, and no fallback after them.
    assert billed_calls(reliable) == 2
    assert [f.number for f in failed] == [1, 2] and len(anthropic_fake.received) == 2
    assert [f.usage for f in failed] == [as_usage(s) for s in anthropic_fake.served]


async def test_a_first_token_timeout_after_message_start_is_a_failed_attempt(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.reset()
    anthropic_fake.script(Script.stall(1.0))
    policy = RetryPolicy(first_token_timeout=0.3, retries=1, backoff_base=0.001)
    events = await events_of(ReliableProvider(claude, policy=policy), prompt("Slow?"), model=SONNET)

    [failed] = [event for event in events if isinstance(event, FailedAttempt)]
    stalled = anthropic_fake.served[0]
    assert failed.usage.input_tokens == stalled.usage.input_tokens
    assert total_input(failed.usage) == total_input(as_usage(stalled)) > 0
    assert isinstance(events[-1], Finished)


async def test_a_hold_covers_every_route_a_call_may_take(claude: AnthropicProvider, gpt: OpenAIProvider) -> None:
    reliable = ReliableProvider(claude, fallbacks=[Route(gpt, "gpt-x"), Route(claude, SONNET)], policy=FAST)
    asked = prompt("Which routes?")

    assert hold_routes(reliable, SONNET) == (("anthropic", SONNET), ("openai", "gpt-x"))
    assert hold_routes(claude, HAIKU) == (("anthropic", HAIKU),) and billed_calls(claude) == 1
    counted = reliable.count_tokens(asked, model=SONNET)
    assert counted == max(claude.count_tokens(asked, model=SONNET), gpt.count_tokens(asked, model="gpt-x"))


def test_claude_messages_start_with_a_question_and_alternate() -> None:
    history = (Turn("assistant", "an answer cut from its question"), Turn("user", "first"), Turn("user", "again"))
    built = messages(Prompt(INSTRUCTIONS, (), history, "now?"))
    assert [m["role"] for m in built] == ["user"]
    (only,) = built
    assert isinstance(only["content"], list)
    assert [block["text"] for block in only["content"] if block["type"] == "text"] == ["first", "again", "now?"]


def held(prompt: Prompt) -> tuple[tuple[str, int], ...]:
    return tuple((passage.hit.chunk_id, passage.index) for passage in prompt.sent)


async def test_a_turn_whose_passages_differ_still_reads_the_conversation_before_it(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    espresso, grinder, milk = (passage(n, topic, 40).hit for n, topic in enumerate(("espresso", "grinder", "milk"), 1))
    budget = 20_000
    first = build_prompt(
        question="How often is the boiler descaled?", hits=[espresso, grinder], history=[], budget=budget
    )
    _, turn1 = await answer(claude, first, model=SONNET)

    history = [Turn("user", first.turn_text(), holds=held(first)), Turn("assistant", DEFAULT_ANSWER)]
    second = build_prompt(
        question="And the milk?", hits=[milk, espresso], history=history, budget=budget, next_number=first.next_number
    )
    # The espresso passage is in the conversation already: cited as [1], not sent again; milk is
    # new and numbered on.
    assert [(p.index, p.hit.chunk_id) for p in second.found_again] == [(1, espresso.chunk_id)]
    assert [(p.index, p.hit.chunk_id) for p in second.sent] == [(3, milk.chunk_id)]
    _, turn2 = await answer(claude, second, model=SONNET)
    sent = anthropic_fake.received[-1].body
    assert [[block["text"] for block in message["content"]] for message in sent["messages"]] == [
        [first.turn_text()],
        [DEFAULT_ANSWER],
        [second.turn_text()],
    ]
    # What the first turn wrote is read whole, though this turn's passages are others: only the
    # first answer and this turn's text are written.
    assert turn2.cache_read_tokens == turn1.cache_write_tokens
    assert turn2.cache_write_tokens == count_tokens(DEFAULT_ANSWER) + count_tokens(second.turn_text())
    assert turn2.input_tokens == 0

    history += [Turn("user", second.turn_text(), holds=held(second)), Turn("assistant", DEFAULT_ANSWER)]
    third = build_prompt(
        question="Anything else about grinding?",
        hits=[grinder],
        history=history,
        budget=budget,
        next_number=second.next_number,
    )
    _, turn3 = await answer(claude, third, model=SONNET)
    # The whole conversation so far is read; the newest answer and the question are written.
    assert turn3.cache_read_tokens == turn1.cache_write_tokens + turn2.cache_write_tokens
    assert turn3.cache_write_tokens == count_tokens(DEFAULT_ANSWER) + count_tokens(third.turn_text())
    assert third.sent_passages == 0 and "[2]" in third.turn_text()


async def test_a_paused_conversation_writes_for_an_hour(
    claude: AnthropicProvider, anthropic_fake: FakeAnthropic
) -> None:
    asked = dataclasses.replace(prompt("How often is the boiler descaled?"), long_cache=True)
    _, written = await answer(claude, asked, model=SONNET)
    sent = anthropic_fake.received[-1].body
    assert sent["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert written.cache_write_1h_tokens == written.cache_write_tokens > 1024

    anthropic_fake.advance_clock(50 * 60)
    _, later = await answer(claude, prompt("How often is the boiler descaled?"), model=SONNET)
    assert later.cache_read_tokens == written.cache_write_tokens
    assert later.cache_write_tokens == later.cache_write_1h_tokens == 0
