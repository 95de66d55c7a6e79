"""A conversation as a file: JSON (the proto's JSON form, every field under its proto name) or
Markdown (to read: each message with its time, the answer's sources, model, tokens and how its
prompt was built).

Cost is not in either: chat-svc does not know prices (usage-svc prices each usage event and
reports costs by conversation).
"""

from dataclasses import dataclass

from google.protobuf.json_format import MessageToJson
from google.protobuf.timestamp_pb2 import Timestamp

from parley.kit.errors import InvalidInput
from parley.v1 import chat_pb2

FORMATS = ("json", "markdown")


@dataclass(frozen=True, slots=True)
class ExportedFile:
    content_type: str
    content: bytes


def export(conversation: chat_pb2.Conversation, format: str) -> ExportedFile:
    if format == "json":
        text = MessageToJson(conversation, preserving_proto_field_name=True, indent=2)
        return ExportedFile("application/json", text.encode())
    if format == "markdown":
        return ExportedFile("text/markdown; charset=utf-8", markdown(conversation).encode())
    raise InvalidInput(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")


def markdown(conversation: chat_pb2.Conversation) -> str:
    lines = [
        f"# {conversation.title}",
        "",
        f"- conversation: `{conversation.id}`",
        f"- collections: {', '.join(f'`{c}`' for c in conversation.collection_ids)}",
        f"- started: {_when(conversation.created_at)}",
        "",
    ]
    for message in conversation.messages:
        lines += _message(message)
    return "\n".join(lines).rstrip() + "\n"


def _message(message: chat_pb2.Message) -> list[str]:
    if message.role != "assistant":
        return [f"## You — {_when(message.created_at)}", "", message.content, ""]
    lines = [f"## Answer ({message.model or 'unknown model'}) — {_when(message.created_at)}", "", message.content, ""]
    if message.incomplete:
        lines += ["*The model stopped mid-answer: this is the part received.*", ""]
    if message.sources:
        lines += ["Sources:", ""]
        for source in message.sources:
            where = f"{source.document_title} › {source.heading}" if source.heading else source.document_title
            lines.append(f"{source.index}. {where}")
        lines.append("")
    usage = message.usage
    lines.append(
        f"*Tokens: {usage.input_tokens:,} in, {usage.output_tokens:,} out, "
        f"{usage.cache_read_tokens:,} read from cache, {usage.cache_write_tokens:,} written to it.*"
    )
    if message.HasField("context_used"):
        used = message.context_used
        lines.append(
            f"*Context: {used.intent} ({used.intent_source}), {used.retrieval} retrieval, {used.tier} tier "
            f"({used.budget_tokens:,} tokens)"
            + (f"; trimmed: {'; '.join(used.trimmed)}" if used.trimmed else "")
            + (f"; {'; '.join(used.notes)}" if used.notes else "")
            + ".*"
        )
    return [*lines, ""]


def _when(stamp: Timestamp) -> str:
    return stamp.ToDatetime().strftime("%Y-%m-%d %H:%M UTC") if stamp.seconds else "—"
