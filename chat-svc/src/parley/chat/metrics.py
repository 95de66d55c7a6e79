"""chat-svc's Prometheus metrics, named after OpenTelemetry's GenAI conventions where they have one.

gen_ai_client_token_usage{token_type, provider, model}     tokens billed per call (histogram):
                                                          input | output | cache_read | cache_write |
                                                          cache_write_1h (a part of cache_write)
gen_ai_server_time_to_first_token_seconds{provider, model} from the call to the first text
parley_chat_provider_retries_total{provider, model}       attempts after a failed one
parley_chat_provider_fallbacks_total{provider, model}      calls moved to this fallback route
parley_chat_provider_errors_total{provider, code}          failed attempts: unavailable |
                                                          first_token_timeout | refused | stream_broken
parley_chat_turns_total{outcome}                          completed, or the turn's error code
parley_chat_completions_total{kind, outcome}              Complete calls past their hold: completed,
                                                          or why not (completions.py)
"""

from prometheus_client import Counter, Histogram

from parley.v1 import common_pb2

# OpenTelemetry's advice for gen_ai.client.token.usage and gen_ai.server.time_to_first_token.
_TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
_FIRST_TOKEN_BUCKETS = (0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0)

token_usage = Histogram(
    "gen_ai_client_token_usage",
    "Tokens billed per LLM call, by kind",
    ["token_type", "provider", "model"],
    buckets=_TOKEN_BUCKETS,
)
time_to_first_token = Histogram(
    "gen_ai_server_time_to_first_token_seconds",
    "Seconds from the call to the first text of the answer, retries and fallbacks included",
    ["provider", "model"],
    buckets=_FIRST_TOKEN_BUCKETS,
)
provider_retries = Counter(
    "parley_chat_provider_retries_total", "LLM attempts after a failed one", ["provider", "model"]
)
provider_fallbacks = Counter(
    "parley_chat_provider_fallbacks_total", "LLM calls moved to a fallback route", ["provider", "model"]
)
provider_errors = Counter("parley_chat_provider_errors_total", "Failed LLM attempts", ["provider", "code"])
turns = Counter("parley_chat_turns_total", "Turns ended, by outcome", ["outcome"])
completions = Counter("parley_chat_completions_total", "Complete calls ended, by kind and outcome", ["kind", "outcome"])

# TokenUsage field → the token_type label: input_tokens is "input", and so on.
_TOKEN_TYPES = {field.name: field.name.removesuffix("_tokens") for field in common_pb2.TokenUsage.DESCRIPTOR.fields}


def observe_usage(usage: common_pb2.TokenUsage, *, provider: str, model: str) -> None:
    for field, token_type in _TOKEN_TYPES.items():
        token_usage.labels(token_type, provider, model).observe(getattr(usage, field))
