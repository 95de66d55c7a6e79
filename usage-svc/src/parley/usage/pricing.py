"""What a model call costs, in integer micro-USD (USD millionths). Pure: no I/O.

Prices are micro-USD per million tokens, so a call costs sum(tokens * price) / 1,000,000
micro-USD; the division rounds up once, on the sum, so a call is never under-charged and
over-charged by less than one micro-USD.
"""

from dataclasses import dataclass

from parley.kit.contracts import LOCAL_PROVIDER
from parley.v1.common_pb2 import TokenUsage

TOKENS_PER_PRICE_UNIT = 1_000_000

# The price row for a model the table does not know: the most expensive we sell, so an
# unknown model is never cheaper than it should be.
DEFAULT_MODEL = "default"
# The offline provider's price row: whatever its model is called, it costs nothing.
LOCAL_MODEL = LOCAL_PROVIDER


@dataclass(frozen=True, slots=True)
class Price:
    model: str
    input: int
    output: int
    cache_read: int = 0
    cache_write: int = 0  # a cache write that lives 5 minutes (1.25x input at Anthropic)
    cache_write_1h: int = 0  # one that lives an hour (2x input at Anthropic)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def usage_problem(usage: TokenUsage) -> str:
    """What makes a usage unbillable, in words; empty when nothing does."""
    if min(usage.input_tokens, usage.output_tokens, usage.cache_read_tokens, usage.cache_write_tokens) < 0:
        return "has negative token counts"
    if not 0 <= usage.cache_write_1h_tokens <= usage.cache_write_tokens:
        return "has more 1-hour cache writes than cache writes (they are a part of them)"
    return ""


def cost_micros(usage: TokenUsage, price: Price) -> int:
    """`cache_write_1h_tokens` are part of `cache_write_tokens` (Recorder refuses more): those are
    billed at the 1-hour write price, the rest of the writes at the 5-minute one."""
    scaled = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + (usage.cache_write_tokens - usage.cache_write_1h_tokens) * price.cache_write
        + usage.cache_write_1h_tokens * price.cache_write_1h
    )
    return _ceil_div(scaled, TOKENS_PER_PRICE_UNIT)


def reservation_micros(*, input_tokens: int, max_output_tokens: int, price: Price) -> int:
    """The most a call may cost: every input token at the dearest rate input can be billed at (a
    cache write costs 1.25x plain input at Anthropic, 2x when it lives an hour), every allowed
    output token used."""
    dearest_input = max(price.input, price.cache_write, price.cache_write_1h, price.cache_read)
    return _ceil_div(input_tokens * dearest_input + max_output_tokens * price.output, TOKENS_PER_PRICE_UNIT)


def fallback_model(provider: str) -> str:
    """The price row for a model the table does not list."""
    return LOCAL_MODEL if provider == LOCAL_PROVIDER else DEFAULT_MODEL
