"""`local`: the offline, deterministic default, so the platform works end to end with no key and
no network. Given the chat's instructions (a turn) it answers from the retrieved passages,
quoting the sentences that best match the question, each with its citation. Given any other
instructions (a rolling summary, a `Complete` call such as an artifact) it answers with an
extractive digest: the first `DIGEST_SENTENCES` sentences (or lines) of the prompt itself, as
many tokens of them as max_tokens allows.
"""

import asyncio
import codecs
import re
from collections.abc import AsyncIterator

from parley.chat.context_builder import INSTRUCTIONS, Prompt
from parley.chat.providers.base import Finished, ProviderEvent, TextDelta, prompt_tokens
from parley.chat.tools import route
from parley.kit.contracts import LOCAL_PROVIDER
from parley.kit.tokens import encoding
from parley.v1 import common_pb2

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it its me my of on or that the this to what when "
    "where which who why will with you your about into there their they them was were has have had not no yes "
    "should would could must may might shall".split()
)
MAX_QUOTED = 3


def _terms(text: str) -> set[str]:
    return {word for word in _WORD.findall(text.lower()) if len(word) > 1 and word not in _STOPWORDS}


def compose_answer(prompt: Prompt) -> str:
    """The best-matching sentence of each of the top passages, each cited; deterministic."""
    wanted = _terms(prompt.question)
    quoted: list[str] = []
    for passage in prompt.passages:
        sentences = [s.strip(" -*#>") for s in _SENTENCE_END.split(passage.hit.text) if s.strip(" -*#>")]
        scored = [(len(wanted & _terms(sentence)), -position, sentence) for position, sentence in enumerate(sentences)]
        if not scored:
            continue
        overlap, _, sentence = max(scored)
        if overlap == 0:
            continue
        quoted.append(f"{sentence} [{passage.index}]")
        if len(quoted) == MAX_QUOTED:
            break
    quoted += _from_global(prompt.global_context, wanted, MAX_QUOTED - len(quoted))
    if not quoted:
        return "I could not find an answer to that in the documents of this conversation's collections."
    return "According to your documents:\n\n" + "\n\n".join(quoted)


def _from_global(text: str, wanted: set[str], room: int) -> list[str]:
    """The global context's lines (outline entries, sheets, index lines) sharing most words with
    the question, in the order they stand, each said to come from the script's outline."""
    if room <= 0 or not text:
        return []
    lines = [line.strip(" -#") for line in text.splitlines()[1:] if line.strip(" -#")]
    scored = [(len(wanted & _terms(line)), -position) for position, line in enumerate(lines)]
    best = sorted((item for item in scored if item[0] > 0), reverse=True)[:room]
    in_order = sorted(best, key=lambda item: -item[1])
    return [f"{lines[-position]} (from the outline and scene cards)" for _, position in in_order]


TOOL_ANSWER_CHARS = 2_000


def compose_from_tools(prompt: Prompt) -> str:
    """What the tools returned, each under its name; deterministic."""
    said: list[str] = []
    for tool_round in prompt.rounds:
        for result in tool_round.results:
            text = result.text if len(result.text) <= TOOL_ANSWER_CHARS else result.text[:TOOL_ANSWER_CHARS] + " […]"
            said.append(
                f"I could not look that up: {text}"
                if result.is_error
                else f"From the script ({result.call.name}):\n\n{text}"
            )
    return "\n\n".join(said)


DIGEST_SENTENCES = 5


def compose_digest(prompt: Prompt) -> str:
    """The opening sentences of the prompt, in order; deterministic."""
    # maxsplit: a long prompt is split no further than the digest needs.
    pieces = _SENTENCE_END.split(prompt.question, maxsplit=DIGEST_SENTENCES)[:DIGEST_SENTENCES]
    return " ".join(piece.strip() for piece in pieces if piece.strip())


class LocalProvider:
    name = LOCAL_PROVIDER
    default_model = LOCAL_PROVIDER  # its one model bears its name
    models: tuple[str, ...] = (LOCAL_PROVIDER,)

    def count_tokens(self, prompt: Prompt, *, model: str) -> int:
        return prompt_tokens(prompt)

    async def stream(self, prompt: Prompt, *, model: str, max_tokens: int) -> AsyncIterator[ProviderEvent]:
        # A question a tool answers exactly is routed to it first (deterministically), so the tools
        # work offline; the round after, the answer is what the tool returned.
        call = route(prompt.question) if prompt.tools and prompt.tools_allowed and not prompt.rounds else None
        if call is not None:
            usage = common_pb2.TokenUsage(input_tokens=await asyncio.to_thread(prompt_tokens, prompt))
            yield Finished(usage=usage, finish_reason="tool_use", provider=self.name, model=model, tool_calls=(call,))
            return
        if prompt.rounds:
            answer = compose_from_tools(prompt)
        elif prompt.instructions == INSTRUCTIONS:
            answer = compose_answer(prompt)
        else:
            answer = compose_digest(prompt)
        tokens = encoding().encode(answer, disallowed_special=())
        finish_reason = "length" if len(tokens) > max_tokens else "stop"
        tokens = tokens[:max_tokens]
        # Token bytes may split a character; the incremental decoder holds the partial bytes back.
        decoder = codecs.getincrementaldecoder("utf-8")()
        for token in tokens:
            text = decoder.decode(encoding().decode_single_token_bytes(token))
            if text:
                yield TextDelta(text)
            # One token at a time, like a remote model, and without starving other turns.
            await asyncio.sleep(0)
        # A completion's prompt may be long: counted off the event loop.
        input_tokens = await asyncio.to_thread(prompt_tokens, prompt)
        usage = common_pb2.TokenUsage(input_tokens=input_tokens, output_tokens=len(tokens))
        yield Finished(usage=usage, finish_reason=finish_reason, provider=self.name, model=model)

    async def close(self) -> None:
        """Nothing to close: no connection."""
