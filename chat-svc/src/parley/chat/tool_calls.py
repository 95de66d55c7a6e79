"""What a prompt carries of tools, whichever provider frames them: the tools offered (a name, a
description, a JSON schema of the arguments), and the rounds so far — what the model said and
called, and what each call returned. Plain records, so the context builder and every provider
can hold them without knowing how a tool runs (`tools.py`)."""

import json
from dataclasses import dataclass, field
from typing import Any

from parley.v1 import chat_pb2, retrieval_pb2


@dataclass(frozen=True, slots=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments: an object


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str  # the provider's id for the call, echoed with its result
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def arguments_json(self) -> str:
        return json.dumps(self.arguments, ensure_ascii=False, sort_keys=True)


def parse_arguments(text: str) -> dict[str, Any]:
    """A tool call's arguments as a provider streamed them (JSON text); a model's malformed JSON,
    or JSON that is not an object, becomes no arguments (the tool says what is missing)."""
    try:
        loaded = json.loads(text) if text.strip() else {}
    except ValueError:
        return {}
    return loaded if isinstance(loaded, dict) else {}


@dataclass(frozen=True, slots=True)
class ToolResult:
    call: ToolCall
    text: str
    is_error: bool = False
    # Passages it found (search_script), numbered in `text` as [n] after the prompt's own: an
    # answer cites them like any passage, and they join its sources.
    passages: tuple[tuple[int, retrieval_pb2.ChunkHit], ...] = ()

    def proto(self, round_number: int) -> chat_pb2.ToolCall:
        return chat_pb2.ToolCall(
            id=self.call.id,
            name=self.call.name,
            input_json=self.call.arguments_json,
            round=round_number,
            result=self.text,
            is_error=self.is_error,
        )


@dataclass(frozen=True, slots=True)
class ToolRound:
    """One model call that asked for tools: the text it said first, its calls, their results."""

    text: str
    calls: tuple[ToolCall, ...]
    results: tuple[ToolResult, ...]
