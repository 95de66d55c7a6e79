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
    cache_write: int = 0


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def cost_micros(usage: TokenUsage, price: Price) -> int:
    scaled = (
        usage.input_tokens * price.input
        + usage.output_tokens * price.output
        + usage.cache_read_tokens * price.cache_read
        + usage.cache_write_tokens * price.cache_write
    )
    return _ceil_div(scaled, TOKENS_PER_PRICE_UNIT)


def reservation_micros(*, input_tokens: int, max_output_tokens: int, price: Price) -> int:
    """The most a call may cost: every input token at the dearest rate input can be billed at (a
    cache write costs 1.25x plain input at Anthropic), every allowed output token used."""
    dearest_input = max(price.input, price.cache_write, price.cache_read)
    return _ceil_div(input_tokens * dearest_input + max_output_tokens * price.output, TOKENS_PER_PRICE_UNIT)


def fallback_model(provider: str) -> str:
    """The price row for a model the table does not list."""
    return LOCAL_MODEL if provider == LOCAL_PROVIDER else DEFAULT_MODEL
