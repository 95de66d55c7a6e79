"""What a message asks for (hint, keywords, a cheaper model, or the default), and the prompt's
parts: in a stable order, carried passages first, trimmed by priority inside the budget."""

from collections.abc import AsyncIterator

import pytest

from parley.chat.context_builder import (
    CONVERSATION_SHARE,
    FOUND_AGAIN,
    LOCAL_SHARE,
    Passage,
    Prompt,
    Turn,
    build_prompt,
    conversation_start,
    history_window,
)
from parley.chat.intent import IntentClassifier, by_keywords
from parley.chat.providers import (
    Finished,
    LocalProvider,
    ProviderEvent,
    ProviderUnavailable,
    ReliableProvider,
    RetryPolicy,
    TextDelta,
)
from parley.kit.tokens import count_tokens
from parley.v1 import common_pb2, retrieval_pb2


@pytest.mark.parametrize(
    ("message", "intent"),
    [
        ("Rewrite this line so it lands harder", "local_edit"),
        ("Can you tighten the dialogue here?", "local_edit"),
        ("make this shorter please", "local_edit"),
        ("Any feedback on this scene?", "section_feedback"),
        ("Does this scene work?", "section_feedback"),
        ("What do you think of the opening?", "section_feedback"),
        ("Brainstorm three endings", "brainstorm"),
        ("What if Rosa never left the farm?", "brainstorm"),
        ("Give me ideas for a subplot", "brainstorm"),
        ("What is Rosa's arc over the whole script?", "global_question"),
        ("What are the main themes?", "global_question"),
        ("How does the structure hold up overall?", "global_question"),
        ("Who drives the truck in scene 12?", None),
        ("When does the storm start?", None),
    ],
)
def test_keywords_tell_the_intent_or_say_nothing(message: str, intent: str | None) -> None:
    assert by_keywords(message) == intent


class Labeller(LocalProvider):
    """A cheaper model that answers with one label (or fails), counting its calls."""

    def __init__(self, label: str, *, fail: bool = False) -> None:
        self.label, self.fail, self.calls = label, fail, 0

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        self.calls += 1
        if self.fail:
            raise ProviderUnavailable("down", provider="cheap")
        yield TextDelta(f" {self.label}.")
        yield Finished(common_pb2.TokenUsage(input_tokens=90, output_tokens=2), "stop", provider="cheap", model=model)


class Bills:
    def __init__(self) -> None:
        self.billed: list[tuple[int, str, str]] = []

    async def __call__(self, usage: common_pb2.TokenUsage, provider: str, model: str) -> None:
        self.billed.append((usage.input_tokens + usage.output_tokens, provider, model))


async def test_the_hint_then_the_keywords_decide_and_no_model_is_asked() -> None:
    labeller, bills = Labeller("brainstorm"), Bills()
    classifier = IntentClassifier(model=(labeller, "small"))
    hinted = await classifier.decide(hint="local_edit", message="Brainstorm endings", bill=bills)
    by_words = await classifier.decide(hint="", message="Brainstorm endings", bill=bills)
    assert (hinted.name, hinted.source, hinted.retrieval) == ("local_edit", "hint", "positional")
    assert (by_words.name, by_words.source, by_words.retrieval) == ("brainstorm", "keywords", "semantic")
    assert labeller.calls == 0 and bills.billed == []


async def test_the_cheaper_model_decides_what_the_keywords_cannot_and_is_billed() -> None:
    labeller, bills = Labeller("section_feedback"), Bills()
    decided = await IntentClassifier(model=(labeller, "small")).decide(hint="", message="Hmm, scene 3?", bill=bills)
    assert (decided.name, decided.source, decided.retrieval) == ("section_feedback", "model", "hybrid")
    assert bills.billed == [(92, "cheap", "small")]


class BrokenOnce(Labeller):
    """Fails its first `broken` calls after its provider reported (and billed) 40 input tokens."""

    name = "cheap"

    def __init__(self, label: str, *, broken: int) -> None:
        super().__init__(label)
        self.broken, self.attempts = broken, 0

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        self.attempts += 1
        if self.attempts <= self.broken:
            raise ProviderUnavailable("overloaded", provider=self.name, usage=common_pb2.TokenUsage(input_tokens=40))
        async for event in super().stream(prompt, model=model, max_tokens=max_tokens):
            yield event


async def nap(seconds: float) -> None:
    """No wait between retries."""


@pytest.mark.parametrize(("broken", "intent"), [(1, "section_feedback"), (5, "question")])
async def test_an_intent_attempt_the_model_billed_before_failing_is_billed_too(broken: int, intent: str) -> None:
    labeller, bills = BrokenOnce("section_feedback", broken=broken), Bills()
    guessing = ReliableProvider(labeller, policy=RetryPolicy(retries=3, paid_retries=1), sleep=nap)
    decided = await IntentClassifier(model=(guessing, "small")).decide(hint="", message="Hmm, scene 3?", bill=bills)

    assert decided.name == intent
    # Answered at the second call; or two billed failures and no more calls (what a hold would cover).
    expected = [(40, "cheap", "small"), (92, "cheap", "small")] if broken == 1 else [(40, "cheap", "small")] * 2
    assert bills.billed == expected and labeller.attempts == 2


@pytest.mark.parametrize("labeller", [Labeller("poetry"), Labeller("question", fail=True)])
async def test_without_a_usable_model_answer_it_is_a_question(labeller: Labeller) -> None:
    decided = await IntentClassifier(model=(labeller, "small")).decide(hint="", message="Scene 3?", bill=Bills())
    assert (decided.name, decided.source) == ("question", "default")


async def test_without_a_cheaper_model_the_default_is_a_question() -> None:
    decided = await IntentClassifier(model=None).decide(hint="", message="Who is Rosa?", bill=Bills())
    assert (decided.name, decided.source, decided.retrieval) == ("question", "default", "semantic")


def test_a_cheaper_model_must_be_one_served() -> None:
    with pytest.raises(ValueError, match="PARLEY_INTENT_MODEL"):
        IntentClassifier.configured("local:gpt-9", {"local": LocalProvider()})


def chunk(chunk_id: str, words: int = 40) -> retrieval_pb2.ChunkHit:
    return retrieval_pb2.ChunkHit(
        chunk_id=chunk_id, document_title="Script", heading=chunk_id, text=f"{chunk_id} says " + "line " * words
    )


def asked(question: str, passages: list[retrieval_pb2.ChunkHit], first: int = 1) -> Turn:
    """A question as an earlier turn sent it, with its passages numbered from `first`."""
    sent = [Passage(first + n, hit) for n, hit in enumerate(passages)]
    text = "\n\n".join([*(p.render() for p in sent), question])
    return Turn("user", text, holds=tuple((p.hit.chunk_id, p.index) for p in sent), plain=question)


def test_parts_come_in_the_stable_order_and_are_counted() -> None:
    history = [asked("Who is Rosa?", [chunk("a")]), Turn("assistant", "The farmer's daughter [1].")]
    prompt = build_prompt(
        question="Is this scene working?",
        hits=[chunk("new"), chunk("a")],
        history=history,
        local="INT. BARN - NIGHT\nRosa counts the eggs.",
        budget=5_000,
        next_number=2,
    )
    # The conversation as it was sent, then this turn's one text: what the next turn sends again.
    assert prompt.parts() == [prompt.instructions, history[0].content, history[1].content, prompt.turn_text()]
    # "a" is in the conversation already: cited by its number, not sent again; "new" is numbered on.
    assert [(p.index, p.hit.chunk_id) for p in prompt.found_again] == [(1, "a")]
    assert [(p.index, p.hit.chunk_id) for p in prompt.sent] == [(2, "new")]
    assert prompt.turn_text() == "\n\n".join(
        [prompt.sent[0].render(), FOUND_AGAIN + "[1].", prompt.local, "Is this scene working?"]
    )
    assert prompt.local.endswith("Rosa counts the eggs.")
    names = [name for name, _ in prompt.part_tokens]
    assert names == ["system", "global", "conversation", "passages", "local", "message"]
    counted = dict(prompt.part_tokens)
    assert counted["global"] == 0  # no outline or character sheets exist yet
    assert counted["local"] == count_tokens(prompt.local)
    assert counted["conversation"] == count_tokens(history[0].content) + count_tokens(history[1].content)
    assert sum(counted.values()) == LocalProvider().count_tokens(prompt, model="local")
    assert prompt.trimmed == () and prompt.conversation_from == 0


def test_a_first_turn_numbers_its_passages_from_one_and_sends_them_all() -> None:
    prompt = build_prompt(
        question="And then?", hits=[chunk("c"), chunk("b"), chunk("c"), chunk("d")], history=[], budget=5_000
    )
    assert [(p.index, p.hit.chunk_id) for p in prompt.sent] == [(1, "c"), (2, "b"), (3, "d")]
    assert prompt.found_again == () and prompt.next_number == 4


def test_a_tools_passages_are_numbered_past_every_number_the_conversation_used() -> None:
    history = [asked("Who is Rosa?", [chunk("a"), chunk("b")], first=7), Turn("assistant", "A farmer [7].")]
    # A global question sends no passage, and finds "a" again: a tool's search starts past 8.
    prompt = build_prompt(question="The ending?", hits=[chunk("a")], history=history, budget=5_000, next_number=9)
    assert prompt.sent == () and [p.index for p in prompt.found_again] == [7]
    assert prompt.next_number == 9
    assert build_prompt(question="And?", hits=[], history=history, budget=5_000, next_number=9).next_number == 9


def test_a_passage_the_conversation_no_longer_sends_is_sent_again_under_a_new_number() -> None:
    history = [asked("Who is Rosa?", [chunk("a", words=200)]), Turn("assistant", "The farmer's daughter [1].")]
    # A conversation too long for the budget's share: the cut moves past the first exchange, which
    # goes plainly, without its passage.
    prompt = build_prompt(
        question="And the barn?", hits=[chunk("a")], history=history, budget=300, next_number=2, conversation_from=0
    )
    assert [turn.content for turn in prompt.history] == ["Who is Rosa?", "The farmer's daughter [1]."]
    assert [(p.index, p.hit.chunk_id) for p in prompt.sent] == [(2, "a")]
    assert prompt.conversation_from == 2
    assert prompt.trimmed[0] == "conversation: the passages of the 2 oldest of 2 messages"


def test_the_cut_moves_in_steps_and_stays_between_them() -> None:
    sent, plain = [1_000, 100] * 3, [10, 100] * 3
    # 3,300 tokens as sent: past the allowance, the cut moves an exchange at a time to half of it.
    assert conversation_start(sent, plain, since=0, allowance=2_500) == 6
    # The next turns keep it while the conversation fits, though each adds an exchange.
    assert conversation_start([*sent, 1_000, 100], [*plain, 10, 100], since=6, allowance=2_500) == 6
    # Until one more exchange passes it: then the cut moves again (to 10: 550 tokens).
    assert (
        conversation_start([*sent, 1_000, 100, 1_000, 100], [*plain, 10, 100, 10, 100], since=6, allowance=2_500) == 10
    )
    # A cut from before the window began is clipped into it, at a question.
    assert conversation_start(sent, plain, since=-4, allowance=5_000) == 0
    assert conversation_start(sent, plain, since=3, allowance=5_000) == 2


@pytest.mark.parametrize(
    ("total", "kept"),
    [(3, 3), (10, 10), (12, 6), (14, 8), (16, 10), (18, 6), (22, 10), (24, 6)],
)
def test_the_conversation_window_moves_six_messages_at_a_time(total: int, kept: int) -> None:
    messages = list(range(total))
    window = history_window(messages[-10:], total=total, last=10)
    assert list(window) == messages[total - kept :]


def test_over_budget_the_lowest_ranked_new_passages_go() -> None:
    hits = [chunk("best"), chunk("second"), chunk("third"), chunk("worst")]
    one = count_tokens(chunk("xxxxxx").text) + 12  # a passage with its "[n] (Script › id)" line
    budget = 80 + 3 * one  # instructions, message, and three passages
    prompt = build_prompt(question="And then?", hits=hits, history=[], budget=budget)
    assert [p.hit.chunk_id for p in prompt.passages] == ["best", "second", "third"]
    assert prompt.trimmed == ("passages: 1 of 4 retrieved, the lowest ranked",)
    assert LocalProvider().count_tokens(prompt, model="local") <= budget


def test_the_conversation_and_the_open_section_keep_to_their_shares() -> None:
    history = [Turn("user", "word " * 200), Turn("assistant", "answer " * 200)] * 5
    prompt = build_prompt(
        question="Tighten this.", hits=[chunk("n")], history=history, local="beat " * 5_000, budget=1_200
    )
    counted = dict(prompt.part_tokens)
    assert counted["conversation"] <= CONVERSATION_SHARE * 1_200
    assert counted["local"] <= LOCAL_SHARE * 1_200
    assert prompt.history and len(prompt.history) < len(history)
    assert prompt.trimmed[0].startswith("local: the open section cut")
    assert "conversation: the" in prompt.trimmed[-1]
    assert LocalProvider().count_tokens(prompt, model="local") <= 1_200
