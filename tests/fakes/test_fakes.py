"""The fakes keep the promises tests elsewhere rely on: the vendors' rules, through the real SDKs."""

import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import TextBlockParam

from parley.ingestion.artifact_writers.answers import CoverageAnswer, read_coverage
from parley.ingestion.artifact_writers.coverage import extracted_coverage
from parley.ingestion.artifact_writers.drafts import COVERAGE_CRITERIA as CRITERIA
from parley.ingestion.artifact_writers.prompts import SYSTEM, coverage_prompt
from parley.ingestion.artifact_writers.reading import scene_parts
from parley.ingestion.formats import parse_document
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.scripting import DEFAULT_ANSWER, Script, count

MODEL = "claude-sonnet-4-6"
LONG = " ".join(f"Paragraph {n} of a long and stable reference text." for n in range(150))  # ~1,650 tokens


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic() as server:
        yield server


@pytest.fixture
async def claude(fake: FakeAnthropic) -> AsyncIterator[anthropic.AsyncAnthropic]:
    fake.reset()
    fake.forget_cache()
    client = anthropic.AsyncAnthropic(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
    yield client
    await client.close()


def block(text: str, *, cached: bool = False) -> TextBlockParam:
    if not cached:
        return {"type": "text", "text": text}
    return {"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}


async def test_more_than_four_breakpoints_are_refused(claude: anthropic.AsyncAnthropic) -> None:
    system = [block(f"part {n}", cached=True) for n in range(5)]
    with pytest.raises(anthropic.BadRequestError, match="maximum of 4"):
        await claude.messages.create(
            model=MODEL, max_tokens=10, system=system, messages=[{"role": "user", "content": "hi"}]
        )


async def test_whole_and_streamed_answers_report_the_same_usage(claude: anthropic.AsyncAnthropic) -> None:
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]
    whole = await claude.messages.create(
        model=MODEL, max_tokens=50, system=[block(LONG, cached=True)], messages=messages
    )
    streamed = await claude.messages.create(
        model=MODEL, max_tokens=50, system=[block(LONG, cached=True)], messages=messages, stream=True
    )
    final = None
    async for event in streamed:
        if event.type == "message_delta":
            final = event.usage
    assert final is not None
    assert whole.content[0].type == "text" and whole.content[0].text == DEFAULT_ANSWER
    assert whole.usage.cache_creation_input_tokens == count(LONG) and whole.usage.cache_read_input_tokens == 0
    assert final.cache_read_input_tokens == count(LONG) and final.cache_creation_input_tokens == 0
    assert whole.usage.input_tokens == final.input_tokens == count("hi")
    assert whole.usage.output_tokens == final.output_tokens == count(DEFAULT_ANSWER)


async def test_a_top_level_cache_control_marks_the_last_block_and_an_hour_lasts_an_hour(
    claude: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": LONG}]
    first = await claude.messages.create(
        model=MODEL, max_tokens=5, messages=messages, cache_control={"type": "ephemeral", "ttl": "1h"}
    )
    fake.advance_clock(3000)
    again = await claude.messages.create(
        model=MODEL, max_tokens=5, messages=messages, cache_control={"type": "ephemeral", "ttl": "1h"}
    )
    assert first.usage.cache_creation_input_tokens == count(LONG)
    assert again.usage.cache_read_input_tokens == count(LONG)


async def test_writes_are_broken_down_by_lifetime_longer_ones_first(claude: anthropic.AsyncAnthropic) -> None:
    hour: TextBlockParam = {"type": "text", "text": LONG, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
    more = LONG.replace("Paragraph", "Section")
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": [block(more, cached=True)]}]

    mixed = await claude.messages.create(model=MODEL, max_tokens=5, system=[hour], messages=messages)

    assert mixed.usage.cache_creation_input_tokens == count(LONG) + count(more)
    assert mixed.usage.cache_creation is not None
    assert mixed.usage.cache_creation.ephemeral_1h_input_tokens == count(LONG)
    assert mixed.usage.cache_creation.ephemeral_5m_input_tokens == count(more)
    with pytest.raises(anthropic.BadRequestError, match="longer ttl"):
        await claude.messages.create(
            model=MODEL,
            max_tokens=5,
            system=[block(LONG, cached=True)],
            messages=[{"role": "user", "content": [{**hour, "text": more}]}],
        )


async def test_one_changed_byte_before_the_breakpoint_misses(claude: anthropic.AsyncAnthropic) -> None:
    messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hi"}]
    await claude.messages.create(model=MODEL, max_tokens=5, system=[block(LONG, cached=True)], messages=messages)
    changed = LONG.replace("Paragraph 7 ", "Paragraph 7  ")
    miss = await claude.messages.create(
        model=MODEL, max_tokens=5, system=[block(changed, cached=True)], messages=messages
    )
    assert miss.usage.cache_read_input_tokens == 0


async def test_pacing_spaces_the_tokens(claude: anthropic.AsyncAnthropic, fake: FakeAnthropic) -> None:
    fake.script(Script(pace=0.02, answer="one two three four five six"))
    started = time.monotonic()
    stream = await claude.messages.create(
        model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    texts = [
        event.delta.text
        async for event in stream
        if event.type == "content_block_delta" and event.delta.type == "text_delta"
    ]
    assert "".join(texts) == "one two three four five six"
    assert time.monotonic() - started >= 0.02 * (len(texts) - 1)


async def test_openai_errors_carry_retry_after_and_the_spend_limit_code() -> None:
    with FakeOpenAI() as fake:
        client = openai.AsyncOpenAI(base_url=fake.base_url, api_key=fake.api_key, max_retries=0)
        fake.script(Script.reject(429, retry_after=2), Script.reject(429, error_code="insufficient_quota"))
        with pytest.raises(openai.RateLimitError) as limited:
            await client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(openai.RateLimitError) as broke:
            await client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])
        await client.close()
    assert limited.value.response.headers["retry-after"] == "2"
    assert broke.value.code == "insufficient_quota"


# --- Ingestion's artifact prompts -------------------------------------------------------------------

COVERAGE_SCRIPT = "Title: Two Rivers\n\n" + "\n\n".join(
    f"EXT. RIVER {n} - DAY\n\nThe water rises.\n\nANN\nWe cross now.\n\n" + ("BOB\nNot yet.\n\n" if n % 2 else "")
    for n in range(1, 8)
)


def coverage_prompt_and_reader() -> tuple[str, str, Callable[[str], object]]:
    """ingestion's own coverage prompt for a small script, and its own check of an answer."""
    sections: Any = parse_document(COVERAGE_SCRIPT.encode(), filename="two.fountain", declared="").sections
    parts = scene_parts(sections)
    facts = extracted_coverage("Two Rivers", sections).content
    scenes = frozenset(scene.number for _, scene in parts)
    return SYSTEM, coverage_prompt("Two Rivers", parts, facts, []), lambda text: read_coverage(text, scenes, CRITERIA)


async def test_both_fakes_answer_ingestions_coverage_prompt_with_a_usable_report(
    claude: anthropic.AsyncAnthropic, fake: FakeAnthropic
) -> None:
    system, prompt, read = coverage_prompt_and_reader()
    message = await claude.messages.create(
        model=MODEL, max_tokens=1500, system=system, messages=[{"role": "user", "content": prompt}]
    )
    answer = read("".join(block.text for block in message.content if block.type == "text"))
    assert isinstance(answer, CoverageAnswer)
    assert [score.criterion for score in answer.scores] == list(CRITERIA)
    assert {number for score in answer.scores for number in score.scenes} <= {str(n) for n in range(1, 8)}
    assert answer.character_breakdown[0].name == "ANN"  # who speaks in the most scenes

    with FakeOpenAI() as gpt:
        client = openai.AsyncOpenAI(base_url=gpt.base_url, api_key=gpt.api_key, max_retries=0)
        completion = await client.chat.completions.create(
            model="gpt-5-mini",
            messages=[{"role": "system", "content": system}, {"role": "user", "content": prompt}],
        )
        await client.close()
    assert read(completion.choices[0].message.content or "") == answer  # the same report, deterministically

    fake.behaviour.writes_artifacts = False
    try:
        plain = await claude.messages.create(
            model=MODEL, max_tokens=1500, system=system, messages=[{"role": "user", "content": prompt}]
        )
    finally:
        fake.behaviour.writes_artifacts = True
    assert "".join(block.text for block in plain.content if block.type == "text") == DEFAULT_ANSWER
