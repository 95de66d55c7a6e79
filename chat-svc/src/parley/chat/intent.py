"""What a message asks for, which decides what context its prompt gets.

In order: the caller's hint (`hint`); else keyword heuristics (`keywords`); else, only when a
cheaper model is configured (`PARLEY_INTENT_MODEL`, `provider:model`), one short call to it,
billed as usage kind `intent` (`model`); else `question` (`default`).

Each intent retrieves its own way:
- local_edit → positional: the open section and its neighbours (one before, one after);
- section_feedback → hybrid: the open section and the passages most like it;
- global_question → minimal: the global context (outlines, main characters' sheets, the scene
  index) and no search; semantic, with a note, when no document has an outline yet;
- brainstorm, question → semantic: the best passages across the conversation's collections.
"""

import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from parley.chat.context_builder import Prompt
from parley.chat.providers import FailedAttempt, Finished, LlmProvider, ProviderError, TextDelta, configured_model
from parley.kit.contracts import INTENTS
from parley.v1 import common_pb2

POSITIONAL, HYBRID, SEMANTIC, MINIMAL = "positional", "hybrid", "semantic", "minimal"
RETRIEVAL = {
    "local_edit": POSITIONAL,
    "section_feedback": HYBRID,
    "global_question": MINIMAL,
    "brainstorm": SEMANTIC,
    "question": SEMANTIC,
}

# Checked in this order: an edit request often also says "scene", feedback often says "this".
_KEYWORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    (
        "local_edit",
        re.compile(
            r"\b(rewrite|re-write|rephrase|reword|edit|tighten|shorten|trim|punch up|polish|fix (this|the)|"
            r"make (this|it|the)\b.*\b(shorter|longer|funnier|tighter|clearer|better)|cut (this|the))\b"
        ),
    ),
    (
        "section_feedback",
        re.compile(
            r"\b(feedback|critique|notes on|review (this|the)|what do you think of|how does (this|the) "
            r"(scene|section|page)|does (this|the) (scene|section|page) work|is (this|the) (scene|section) working)\b"
        ),
    ),
    (
        "brainstorm",
        re.compile(r"\b(brainstorm|ideas? (for|about)|what if|alternatives?|ways to|options for|suggest)\b"),
    ),
    (
        "global_question",
        re.compile(
            r"\b(overall|whole (script|story|screenplay|book|document)|entire|throughout|arc|themes?|"
            r"structure|across the|from start to finish|main characters?)\b"
        ),
    ),
)

INTENT_INSTRUCTIONS = (
    "Classify the user's message about their document into exactly one of: "
    + ", ".join(INTENTS)
    + ". local_edit asks to change the text they have open; section_feedback asks for an opinion on it; "
    "global_question asks about the whole document; brainstorm asks for ideas; question is anything else. "
    "Reply with the label only."
)
INTENT_MAX_TOKENS = 8


@dataclass(frozen=True, slots=True)
class Intent:
    name: str
    source: str  # hint | keywords | model | default

    @property
    def retrieval(self) -> str:
        return RETRIEVAL[self.name]


def by_keywords(message: str) -> str | None:
    text = message.lower()
    return next((intent for intent, pattern in _KEYWORDS if pattern.search(text)), None)


# Bills one classification call: (usage, provider, model).
BillIntent = Callable[[common_pb2.TokenUsage, str, str], Awaitable[None]]


class IntentClassifier:
    """`model`, when given, is the cheaper model asked when the keywords say nothing."""

    def __init__(self, *, model: tuple[LlmProvider, str] | None) -> None:
        self._model = model

    @classmethod
    def configured(cls, spec: str, providers: Mapping[str, LlmProvider]) -> "IntentClassifier":
        """From `PARLEY_INTENT_MODEL` (`provider:model`, or empty for none); a model not served stops the service."""
        return cls(model=configured_model("PARLEY_INTENT_MODEL", spec, providers))

    async def decide(self, *, hint: str, message: str, bill: BillIntent) -> Intent:
        if hint:
            return Intent(hint, "hint")
        if (found := by_keywords(message)) is not None:
            return Intent(found, "keywords")
        if self._model is None:
            return Intent("question", "default")
        provider, model = self._model
        prompt = Prompt(INTENT_INSTRUCTIONS, (), (), message)
        said: list[str] = []
        finished: Finished | None = None
        try:
            async for event in provider.stream(prompt, model=model, max_tokens=INTENT_MAX_TOKENS):
                if isinstance(event, TextDelta):
                    said.append(event.text)
                elif isinstance(event, FailedAttempt):  # the provider billed it before it failed
                    await bill(event.usage, event.provider, event.model)
                elif isinstance(event, Finished):
                    finished = event
        except ProviderError:  # a guess is not worth failing the turn for
            return Intent("question", "default")
        if finished is not None:
            await bill(finished.usage, finished.provider, finished.model)
        label = "".join(said).strip().lower().strip(".`'\" ")
        return Intent(label, "model") if label in INTENTS else Intent("question", "default")
