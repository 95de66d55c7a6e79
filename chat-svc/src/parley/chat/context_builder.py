"""The prompt of a turn, built inside the tier's token budget (fitted with cl100k; the provider
counts what it will bill).

Stable parts come first (instructions, then the passages, then the history, then the new
question) so a provider's prompt cache can reuse the longest possible prefix across turns.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from parley.kit.tokens import count_tokens
from parley.v1 import retrieval_pb2

# History may take at most this share of the budget; passages are what answers cite.
HISTORY_SHARE = 0.3
PASSAGE_SEPARATOR_TOKENS = 1

INSTRUCTIONS = (
    "You answer questions about the user's documents. Use only the numbered passages below. "
    "Cite every claim with the passage number in brackets, like [1]. "
    "If the passages do not contain the answer, say so."
)


@dataclass(frozen=True, slots=True)
class Passage:
    index: int  # the [n] an answer cites
    hit: retrieval_pb2.ChunkHit

    def render(self) -> str:
        where = f"{self.hit.document_title} › {self.hit.heading}" if self.hit.heading else self.hit.document_title
        return f"[{self.index}] ({where})\n{self.hit.text}"


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # user | assistant
    content: str


@dataclass(frozen=True, slots=True)
class Prompt:
    instructions: str
    passages: tuple[Passage, ...]
    history: tuple[Turn, ...]
    question: str

    def context(self) -> str:
        return "\n\n".join(passage.render() for passage in self.passages)

    def parts(self) -> list[str]:
        """Every text the model reads, in order (a provider counts and frames them)."""
        parts = [self.instructions, self.context(), *(turn.content for turn in self.history), self.question]
        return [part for part in parts if part]


def build_prompt(
    *, question: str, hits: Sequence[retrieval_pb2.ChunkHit], history: Sequence[Turn], budget: int
) -> Prompt:
    remaining = budget - count_tokens(INSTRUCTIONS) - count_tokens(question)

    kept_history: list[Turn] = []
    history_budget = int(budget * HISTORY_SHARE)
    for turn in reversed(history):  # the most recent turns matter most
        cost = count_tokens(turn.content)
        if cost > history_budget or cost > remaining:
            break
        kept_history.insert(0, turn)
        history_budget -= cost
        remaining -= cost

    passages: list[Passage] = []
    for hit in hits:  # best first, as retrieval ranked them
        passage = Passage(index=len(passages) + 1, hit=hit)
        # What the prompt carries: the text with its "[n] (title › heading)" line and separator.
        cost = count_tokens(passage.render()) + PASSAGE_SEPARATOR_TOKENS
        if cost > remaining:
            continue
        passages.append(passage)
        remaining -= cost

    return Prompt(INSTRUCTIONS, tuple(passages), tuple(kept_history), question)
