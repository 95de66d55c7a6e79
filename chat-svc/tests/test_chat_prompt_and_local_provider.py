"""The prompt stays inside its tier's budget, and the local provider answers from it with citations."""

import uuid

from parley.chat.context_builder import Turn, build_prompt
from parley.chat.providers import Finished, LocalProvider, TextDelta
from parley.chat.providers.local import compose_answer
from parley.kit.contracts import tier_budget
from parley.kit.tokens import count_tokens
from parley.v1 import chat_pb2, common_pb2, retrieval_pb2


def hit(text: str, *, title: str = "Manual", heading: str = "") -> retrieval_pb2.ChunkHit:
    return retrieval_pb2.ChunkHit(
        chunk_id=str(uuid.uuid4()),
        document_id="d",
        document_title=title,
        heading=heading,
        text=text,
        token_count=count_tokens(text),
    )


LOCAL = LocalProvider()


def test_tiers_have_the_design_budgets() -> None:
    assert tier_budget(chat_pb2.TIER_QUICK) == 1_200
    assert tier_budget(chat_pb2.TIER_UNSPECIFIED) == 5_000
    assert tier_budget(chat_pb2.TIER_DEEP) == 20_000


def test_prompt_keeps_the_best_passages_that_fit_the_budget() -> None:
    long = hit("word " * 900)
    short = hit("The boiler is descaled every 200 shots.")
    prompt = build_prompt(question="How often?", hits=[long, short], history=[], budget=400)
    assert [p.hit.text for p in prompt.passages] == [short.text]
    assert prompt.passages[0].index == 1
    assert LOCAL.count_tokens(prompt, model="local") <= 400


def test_a_full_prompt_never_passes_its_budget() -> None:
    hits = [
        hit(f"Passage {n} about descaling the boiler with citric acid. " * 12, heading=f"Part {n}") for n in range(40)
    ]
    history = [Turn("user", "How do I descale? " * 20), Turn("assistant", "With citric acid. " * 20)]
    for tier in (chat_pb2.TIER_QUICK, chat_pb2.TIER_STANDARD):
        prompt = build_prompt(question="How often?", hits=hits, history=history, budget=tier_budget(tier))
        assert prompt.passages, "some passages fit"
        assert LOCAL.count_tokens(prompt, model="local") <= tier_budget(tier)


def test_history_keeps_the_most_recent_turns_within_its_share() -> None:
    history = [Turn("user", "old question " * 400), Turn("assistant", "recent answer"), Turn("user", "recent")]
    prompt = build_prompt(question="next?", hits=[], history=history, budget=1_200)
    assert [turn.content for turn in prompt.history] == ["recent answer", "recent"]


def test_answer_quotes_the_matching_sentence_with_its_citation() -> None:
    passages = [hit("Grind fine. Descale the boiler every 200 shots. Rinse twice.", heading="Care")]
    prompt = build_prompt(question="How often do I descale the boiler?", hits=passages, history=[], budget=5_000)
    assert compose_answer(prompt) == "According to your documents:\n\nDescale the boiler every 200 shots. [1]"


def test_answer_says_so_when_nothing_matches() -> None:
    prompt = build_prompt(question="What is the capital of Peru?", hits=[hit("Descale often.")], history=[], budget=500)
    assert "could not find" in compose_answer(prompt)


async def test_local_provider_streams_the_answer_and_counts_its_tokens() -> None:
    prompt = build_prompt(
        question="Where is the café?", hits=[hit("The café is beside the station.")], history=[], budget=5_000
    )
    events = [event async for event in LocalProvider().stream(prompt, model="local", max_tokens=1_000)]
    text = "".join(event.text for event in events if isinstance(event, TextDelta))
    finished = events[-1]
    assert isinstance(finished, Finished)
    assert text == compose_answer(prompt)
    assert "café" in text  # multi-byte characters survive token-by-token streaming
    assert finished.usage.output_tokens == count_tokens(text)
    assert finished.usage.input_tokens == LOCAL.count_tokens(prompt, model="local")
    assert finished.finish_reason == "stop"


async def test_local_provider_stops_at_max_tokens() -> None:
    prompt = build_prompt(question="descale boiler", hits=[hit("Descale the boiler.")], history=[], budget=5_000)
    events = [event async for event in LocalProvider().stream(prompt, model="local", max_tokens=3)]
    usage = common_pb2.TokenUsage(input_tokens=LOCAL.count_tokens(prompt, model="local"), output_tokens=3)
    assert events[-1] == Finished(usage=usage, finish_reason="length", provider="local", model="local")
